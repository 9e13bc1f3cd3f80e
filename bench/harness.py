"""The harness plumbing: a registry of scenarios, interleaved rounds, aggregation and the Markdown report.

A scenario is a named callable that does one timed run and returns a RunResult. The runner runs all
selected scenarios once per round, in forward order on even rounds and reverse order on odd ones
(A/B/A/B, then B/A), because this VM's speed drifts by up to 60 % within minutes
(/work/shared/design/perf-limits.md): only runs seconds apart may be compared, so ratios are taken
per round and then the median over rounds is reported.

A scenario whose subject does not exist yet (e.g. delivery, while it is being built) is registered
with `unavailable` returning the reason; it is reported as "not measured" with that reason, never
with a number.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Ctx = TypeVar("Ctx")

CPU_GROUPS = ("server", "rabbitmq", "postgres", "loadgen")


@dataclass
class RunResult:
    msgs_per_s: float
    ok: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunResult:
        return cls(
            msgs_per_s=float(d["msgs_per_s"]),
            ok=int(d["ok"]),
            seconds=float(d["seconds"]),
            latency_ms=dict(d.get("latency_ms", {})),
            cpu_s=dict(d.get("cpu_s", {})),
            rss_mib=dict(d.get("rss_mib", {})),
            statuses=dict(d.get("statuses", {})),
            extra=dict(d.get("extra", {})),
        )

    def cpu_ms_per_msg(self, group: str) -> float | None:
        if self.ok <= 0 or group not in self.cpu_s:
            return None
        return self.cpu_s[group] * 1000 / self.ok

    def errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in ("200", "202", "ok"))


@dataclass
class Scenario(Generic[Ctx]):
    name: str
    kind: str  # "baseline", "hub", "delivery", ...
    description: str
    run: Callable[[Ctx], RunResult]
    quick: bool = True  # part of --quick
    unavailable: Callable[[], str | None] = lambda: None


class Registry(Generic[Ctx]):
    def __init__(self) -> None:
        self._scenarios: dict[str, Scenario[Ctx]] = {}

    def add(self, scenario: Scenario[Ctx]) -> Scenario[Ctx]:
        if scenario.name in self._scenarios:
            raise ValueError(f"scenario {scenario.name!r} registered twice")
        self._scenarios[scenario.name] = scenario
        return scenario

    def add_fn(
        self,
        name: str,
        kind: str,
        description: str,
        fn: Callable[[Ctx], RunResult],
        *,
        quick: bool = True,
        unavailable: Callable[[], str | None] | None = None,
    ) -> Scenario[Ctx]:
        return self.add(Scenario(name, kind, description, fn, quick, unavailable or (lambda: None)))

    def scenario(
        self,
        name: str,
        kind: str,
        description: str,
        *,
        quick: bool = True,
        unavailable: Callable[[], str | None] | None = None,
    ) -> Callable[[Callable[[Ctx], RunResult]], Callable[[Ctx], RunResult]]:
        """Decorator form of add()."""

        def register(fn: Callable[[Ctx], RunResult]) -> Callable[[Ctx], RunResult]:
            self.add(Scenario(name, kind, description, fn, quick, unavailable or (lambda: None)))
            return fn

        return register

    def __iter__(self) -> Any:
        return iter(self._scenarios.values())

    def __getitem__(self, name: str) -> Scenario[Ctx]:
        return self._scenarios[name]

    def names(self) -> list[str]:
        return list(self._scenarios)

    def select(self, *, quick: bool, only: Iterable[str] = ()) -> list[Scenario[Ctx]]:
        wanted = list(only)
        chosen = [s for s in self._scenarios.values() if (s.quick or not quick)]
        if wanted:
            chosen = [s for s in chosen if any(w in s.name for w in wanted)]
        return chosen


@dataclass
class Results:
    """Raw runs per scenario (one per round, in round order) and reasons for scenarios not measured."""

    runs: dict[str, list[RunResult]] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, result: RunResult) -> None:
        self.runs.setdefault(name, []).append(result)

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": {k: [r.__dict__ for r in v] for k, v in self.runs.items()},
            "not_measured": self.not_measured,
            "descriptions": self.descriptions,
            "failures": self.failures,
        }


def run_rounds(
    scenarios: list[Scenario[Ctx]],
    ctx: Ctx,
    rounds: int,
    *,
    between: Callable[[Ctx], None] = lambda _: None,
    log: Callable[[str], None] = print,
    results: Results | None = None,
) -> Results:
    """Run every available scenario once per round, alternating the order (A/B, then B/A)."""
    out = results or Results()
    ready = []
    for s in scenarios:
        out.descriptions[s.name] = s.description
        reason = s.unavailable()
        if reason:
            out.not_measured[s.name] = reason
            log(f"  {s.name}: not measured ({reason})")
        else:
            ready.append(s)
    for r in range(rounds):
        order = ready if r % 2 == 0 else list(reversed(ready))
        for s in order:
            try:
                result = s.run(ctx)
            except Exception as exc:  # one broken run must not lose the others: report it instead
                out.failures.setdefault(s.name, []).append(f"{type(exc).__name__}: {str(exc)[-300:]}")
                log(f"  round {r + 1}/{rounds} {s.name}: FAILED {type(exc).__name__}: {str(exc)[-300:]}")
                between(ctx)
                continue
            out.add(s.name, result)
            errors = f", {result.errors()} errors {result.statuses}" if result.errors() else ""
            p99 = result.latency_ms.get("p99")
            lat = f", p99 {p99:.1f} ms" if p99 is not None else ""
            log(f"  round {r + 1}/{rounds} {s.name}: {result.msgs_per_s:,.0f} msgs/s{lat}{errors}")
            between(ctx)
    return out


# -- aggregation ----------------------------------------------------------------------------------


@dataclass
class Summary:
    name: str
    n: int
    median: float
    low: float
    high: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_ms: dict[str, float]
    busy: float | None
    rss_mib: dict[str, float]
    errors: int

    @property
    def spread_pct(self) -> float:
        return 100 * (self.high - self.low) / self.median if self.median else 0.0

    def cpu_total(self) -> float:
        return sum(v for k, v in self.cpu_ms.items() if k in CPU_GROUPS)


def _median_of(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return statistics.median(xs) if xs else None


def summarize(name: str, runs: list[RunResult]) -> Summary:
    rates = [r.msgs_per_s for r in runs]
    groups = sorted({g for r in runs for g in r.cpu_s if g != "machine_busy"})
    cpu = {g: v for g in groups if (v := _median_of([r.cpu_ms_per_msg(g) for r in runs])) is not None}
    rss_groups = sorted({g for r in runs for g in r.rss_mib})
    return Summary(
        name=name,
        n=len(runs),
        median=statistics.median(rates),
        low=min(rates),
        high=max(rates),
        p50_ms=_median_of([r.latency_ms.get("p50") for r in runs]),
        p99_ms=_median_of([r.latency_ms.get("p99") for r in runs]),
        cpu_ms=cpu,
        busy=_median_of([r.cpu_s.get("machine_busy") for r in runs]),
        rss_mib={g: max(r.rss_mib.get(g, 0.0) for r in runs) for g in rss_groups},
        errors=sum(r.errors() for r in runs),
    )


def ratio(results: Results, a: str, b: str) -> tuple[float, list[float]] | None:
    """Median over rounds of throughput(a) / throughput(b), pairing the runs of the same round."""
    ra, rb = results.runs.get(a), results.runs.get(b)
    if not ra or not rb:
        return None
    per_round = [x.msgs_per_s / y.msgs_per_s for x, y in zip(ra, rb, strict=False) if y.msgs_per_s > 0]
    if not per_round:
        return None
    return statistics.median(per_round), per_round


# -- Markdown --------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "" if v is None else fmt.format(v)


def summary_table(results: Results) -> str:
    lines = [
        "| scenario | n | msgs/s median | min | max | spread | p50 ms | p99 ms "
        "| CPU ms/msg: server | rabbitmq | postgres | loadgen | total | machine busy | peak RSS MiB server "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.runs.items():
        s = summarize(name, runs)
        cpu = [_f(s.cpu_ms.get(g), "{:.3f}") for g in CPU_GROUPS]
        lines.append(
            f"| {name} | {s.n} | {s.median:,.0f} | {s.low:,.0f} | {s.high:,.0f} | {s.spread_pct:.0f}% "
            f"| {_f(s.p50_ms, '{:.1f}')} | {_f(s.p99_ms, '{:.1f}')} | {' | '.join(cpu)} "
            f"| {s.cpu_total():.3f} | {_f(None if s.busy is None else 100 * s.busy, '{:.0f}%')} "
            f"| {_f(s.rss_mib.get('server'))} | {s.errors} |"
        )
    for name, failed in results.failures.items():
        lines.append(f"| {name} | failed runs: {len(failed)} | {failed[0][:120]} |" + " |" * 13)
    for name, reason in results.not_measured.items():
        lines.append(f"| {name} | 0 | not measured: {reason} |" + " |" * 13)
    return "\n".join(lines)


def descriptions_list(results: Results) -> str:
    return "\n".join(f"* `{name}`: {text}" for name, text in results.descriptions.items())


@dataclass
class Target:
    what: str
    measured: float | None
    goal: float
    higher_is_better: bool = True
    unit: str = "x"
    detail: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        ok = self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal
        return "met" if ok else "**not met**"


def targets_table(targets: list[Target]) -> str:
    lines = ["| target | goal | measured | verdict | detail |", "|---|---:|---:|---|---|"]
    for t in targets:
        op = ">=" if t.higher_is_better else "<="
        measured = "" if t.measured is None else f"{t.measured:.2f} {t.unit}".strip()
        lines.append(f"| {t.what} | {op} {t.goal:g} {t.unit} | {measured} | {t.verdict} | {t.detail} |")
    return "\n".join(lines)


def versions_table(versions: dict[str, str]) -> str:
    lines = ["| component | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    return "\n".join(lines)


def replace_section(document: str, heading: str, body: str) -> str:
    """Replace the `## heading` section (up to the next `## `) with body; append it when absent."""
    marker = f"## {heading}\n"
    section = f"{marker}\n{body.strip()}\n"
    start = document.find(marker)
    if start < 0:
        return document.rstrip() + "\n\n" + section
    end = document.find("\n## ", start + len(marker))
    tail = "" if end < 0 else document[end:]
    return document[:start] + section + tail
