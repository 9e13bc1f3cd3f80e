"""A machine probe for the tail-latency runs: how late a sleeping process gets its core back, how fast
a fixed piece of Python work runs, and the kernel's pressure and steal counters, over time.

Run as `python -m bench.probe OUT SECONDS`; writes one JSON object to OUT when the time is up. It
wakes every 10 ms and works ~0.2 ms, so it takes ~2 % of one core.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

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


def main(argv: list[str]) -> int:
    out, seconds = Path(argv[0]), float(argv[1])
    start = time.perf_counter()
    wakes: list[tuple[float, float, float]] = []  # (t, late by, work took)
    samples: list[tuple[float, dict[str, float]]] = []
    due = start
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        late = now - due
        t0 = time.perf_counter()
        _work()
        took = time.perf_counter() - t0
        wakes.append((now - start, late, took))
        if n % SAMPLE_EVERY == 0:
            samples.append((now - start, _pressure()))
        n += 1
        due = max(due + PERIOD, time.perf_counter())
        time.sleep(max(0.0, due - time.perf_counter()))
    out.write_text(json.dumps({"started": start, "wakes": wakes, "samples": samples}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
