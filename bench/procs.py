"""CPU and memory accounting from /proc: CPU seconds per process group over a measured window.

Groups: the server under test (given pids), RabbitMQ (every `beam.smp`), PostgreSQL (every `postgres`
process: postmaster and backends), the load generator (the process measuring), and the whole machine
(/proc/stat). A process that starts inside the window counts from zero; one that ends inside it is
lost (the pools keep their connections for the whole run, so this is rare and small).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
GROUP_COMMS = {"rabbitmq": ("beam.smp",), "postgres": ("postgres",)}


def cpu_seconds(pid: int) -> float | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields we need follow the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _comm(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def pids_named(names: tuple[str, ...]) -> list[int]:
    out = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _comm(int(entry.name)) in names:
            out.append(int(entry.name))
    return out


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (now) or VmHWM (peak) of one process in KiB; 0 when it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _machine_busy() -> tuple[float, float]:
    """(busy jiffies, total jiffies) of all cores."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class Snapshot:
    per_pid: dict[str, dict[int, float]]
    busy: tuple[float, float]


class CpuMeter:
    """meter.start() ... meter.stop() -> CPU seconds per group; groups["server"] are the given pids."""

    def __init__(self, server_pids: list[int], *, self_group: str | None = "loadgen") -> None:
        """self_group: the group of the measuring process, or None when it is the server itself."""
        self.server_pids = server_pids
        self.self_group = self_group
        self._start: Snapshot | None = None

    def _snapshot(self) -> Snapshot:
        groups: dict[str, list[int]] = {"server": list(self.server_pids)}
        if self.self_group is not None:
            groups[self.self_group] = [os.getpid()]
        for group, names in GROUP_COMMS.items():
            groups[group] = pids_named(names)
        per_pid: dict[str, dict[int, float]] = {}
        for group, pids in groups.items():
            per_pid[group] = {}
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    per_pid[group][pid] = seconds
        return Snapshot(per_pid, _machine_busy())

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group over the window, plus "machine_busy" as a share of all cores (0..1)."""
        assert self._start is not None, "start() first"
        end = self._snapshot()
        out: dict[str, float] = {}
        for group, pids in end.per_pid.items():
            before = self._start.per_pid.get(group, {})
            out[group] = sum(v - before.get(pid, 0.0) for pid, v in pids.items())
        if len(self.server_pids) > 1:  # several servers: each one's share too
            before = self._start.per_pid.get("server", {})
            for i, pid in enumerate(self.server_pids, 1):
                out[f"server#{i}"] = end.per_pid["server"].get(pid, 0.0) - before.get(pid, 0.0)
        busy = end.busy[0] - self._start.busy[0]
        total = end.busy[1] - self._start.busy[1]
        out["machine_busy"] = busy / total if total > 0 else 0.0
        return out

    def peak_rss_mib(self) -> dict[str, float]:
        """Peak RSS of the server pids and the measuring process; current RSS sum of RabbitMQ/PostgreSQL."""
        out = {"server": sum(rss_kib(p, "VmHWM") for p in self.server_pids) / 1024}
        if self.self_group is not None:
            out[self.self_group] = rss_kib(os.getpid(), "VmHWM") / 1024
        for group, names in GROUP_COMMS.items():
            out[group] = sum(rss_kib(p) for p in pids_named(names)) / 1024
        return out
