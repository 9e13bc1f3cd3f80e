"""A machine probe for the tail-latency runs: how late a sleeping process gets its core back, how fast
a fixed piece of Python work runs, and the kernel's pressure and steal counters, over time.

Run as `python -m bench.probe OUT SECONDS [PID ...]`; writes one JSON object to OUT when the time is
up. It wakes every 10 ms and works ~0.2 ms, so it takes ~2 % of one core. Every 100 ms it also reads
the CPU time of each process group: the given pids ("server"), PostgreSQL, RabbitMQ and the load
generator, so that a slow stretch can be laid beside who had the cores.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import GROUP_COMMS, cpu_seconds, pids_named

PERIOD = 0.010
SAMPLE_EVERY = 10  # pressure and steal every 10th wake-up (100 ms)


def _work() -> None:
    x = 0
    for i in range(5000):
        x += i * i


def _pressure() -> dict[str, float]:
    out: dict[str, float] = {}
    for what in ("cpu", "io", "memory"):
        try:
            for line in Path(f"/proc/pressure/{what}").read_text().splitlines():
                kind, *fields = line.split()
                total = dict(f.split("=") for f in fields)["total"]
                out[f"{what}.{kind}"] = int(total) / 1e6  # seconds stalled, cumulative
        except OSError:
            pass
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    out["steal"] = int(cpu[7]) / 100 if len(cpu) > 7 else 0.0
    return out


def _loadgen_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"bench.loadgen" in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def _group_cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) or 0.0 for p in pids) for name, pids in groups.items()}


def _fsync_took(fd: int) -> float:
    """One 512-byte write and fdatasync on the root file system, where PostgreSQL's WAL and
    RabbitMQ's quorum-queue log are: how long a commit's flush waits right now."""
    t0 = time.perf_counter()
    os.pwrite(fd, b"x" * 512, 0)
    os.fdatasync(fd)
    return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    out, seconds = Path(argv[0]), float(argv[1])
    groups = {"server": [int(p) for p in argv[2:]]}
    groups.update({name: pids_named(comms) for name, comms in GROUP_COMMS.items()})
    start = time.perf_counter()
    wakes: list[tuple[float, float, float, float]] = []  # (t, late by, work took, fdatasync took)
    handle, path = tempfile.mkstemp(prefix="hub-probe-", dir="/var/tmp")
    os.unlink(path)
    samples: list[tuple[float, dict[str, float]]] = []
    due = start
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        late = now - due
        t0 = time.perf_counter()
        _work()
        took = time.perf_counter() - t0
        wakes.append((now - start, late, took, _fsync_took(handle) if n % 5 == 0 else 0.0))
        if n % SAMPLE_EVERY == 0:
            if not groups.get("loadgen"):
                groups["loadgen"] = _loadgen_pids()
            samples.append(
                (now - start, _pressure() | {f"cpu:{k}": v for k, v in _group_cpu(groups).items()})
            )
        n += 1
        due = max(due + PERIOD, time.perf_counter())
        time.sleep(max(0.0, due - time.perf_counter()))
    os.close(handle)
    out.write_text(json.dumps({"started": start, "wakes": wakes, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
