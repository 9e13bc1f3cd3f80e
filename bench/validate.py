"""Validation throughput: hub Validator.validate vs bare lxml parse+validate vs xmlschema.

Run: `.venv/bin/python -m bench.validate` (or `python bench/validate.py`); `--quick` for a smoke run.
The VM's speed drifts by up to 60 % within minutes (see docs/performance.md), so the variants run
interleaved: each round alternates them in 0.1 s slices (A/B/C/A/B/C...), each row reports the median
and spread over the rounds, and the ratio hub / bare lxml is taken per round.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lxml import etree

from hub.validation import SchemaRegistry, Validator

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "validate.json"
DAY = date(2025, 6, 1)


def _messages() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, namespace)."""
    from tests.support.berichten import declaratie, example

    small = example("iwmo-3.2", "WMO301")
    large = declaratie("iwmo", 1000)
    ns = "http://www.istandaarden.nl/iwmo/3_2/{}/schema"
    return {"small WMO301": (small, ns.format("wmo301")), "large WMO323": (large, ns.format("wmo323"))}


SLICE = 0.1  # seconds: within a round the variants alternate in slices this long


def _timed(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    """(calls, elapsed) of fn over about `seconds` (at least 3 calls)."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline and n >= 3:
            return n, now - start


def _rate(fn: Callable[[], object], seconds: float) -> float:
    n, elapsed = _timed(fn, seconds)
    return n / elapsed


def _round(variants: dict[str, Callable[[], object]], budget: dict[str, float]) -> dict[str, float]:
    """One round: the variants alternate in short slices (A/B/C/A/B/C...), so that drift in the VM's
    speed, which acts over seconds, hits them alike; returns calls per second of each."""
    calls = dict.fromkeys(variants, 0)
    spent = dict.fromkeys(variants, 0.0)
    while any(spent[v] < budget[v] for v in variants):
        for v, fn in variants.items():
            if spent[v] < budget[v]:
                n, elapsed = _timed(fn, min(SLICE, budget[v] - spent[v]))
                calls[v] += n
                spent[v] += elapsed
    return {v: calls[v] / spent[v] for v in variants}


def _variants(
    validator: Validator, data: bytes, namespace: str, with_xmlschema: bool,
) -> dict[str, Callable[[], object]]:
    entry = validator.registry.lookup(namespace, DAY)
    assert entry is not None
    schema = entry.pool.take()  # the same compiled schema the hub uses
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

    def bare() -> bool:
        return schema.validate(etree.fromstring(data, parser))

    def hub() -> bool:
        return validator.validate(data, on=DAY).valid

    assert hub() and bare(), "benchmark message must be valid"
    variants: dict[str, Callable[[], object]] = {"hub": hub, "bare lxml": bare}
    if with_xmlschema:
        xs = entry.explainer()
        text = data.decode("utf-8")
        variants["xmlschema"] = lambda: xs.is_valid(text)
    return variants


def _stats(rates: list[float]) -> dict[str, float]:
    med = statistics.median(rates)
    spread = 100 * (max(rates) - min(rates)) / med
    return {"median": med, "min": min(rates), "max": max(rates), "spread_pct": spread}


def run(rounds: int, seconds: float, xmlschema_seconds: float) -> dict[str, Any]:
    validator = Validator(SchemaRegistry.load(REPO / "xsd" / "releases.toml"))
    out: dict[str, Any] = {"machine": machine(), "rounds": rounds, "seconds_per_run": seconds, "messages": {}}
    for name, (data, namespace) in _messages().items():
        variants = _variants(validator, data, namespace, with_xmlschema=True)
        for fn in variants.values():  # warm-up
            _rate(fn, min(seconds, 0.2))
        raw: dict[str, list[float]] = {v: [] for v in variants}
        budget = {v: xmlschema_seconds if v == "xmlschema" else seconds for v in variants}
        for _ in range(rounds):
            for v, rate in _round(variants, budget).items():
                raw[v].append(rate)
        ratios = [h / b for h, b in zip(raw["hub"], raw["bare lxml"], strict=True)]
        out["messages"][name] = {
            "bytes": len(data),
            "raw_msgs_per_s": raw,
            "stats": {v: _stats(r) for v, r in raw.items()},
            "ratio_hub_bare_per_round": ratios,
            "ratio_hub_bare_median": statistics.median(ratios),
        }
    return out


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "lxml": ".".join(map(str, etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, etree.LIBXML_VERSION)),
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        "| message | bytes | variant | msgs/s median | min | max | spread | hub / bare lxml |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in result["messages"].items():
        for v, s in m["stats"].items():
            ratio = f"{m['ratio_hub_bare_median']:.2f}" if v == "hub" else ""
            lines.append(
                f"| {name} | {m['bytes']:,} | {v} | {s['median']:,.0f} | {s['min']:,.0f} | {s['max']:,.0f} "
                f"| {s['spread_pct']:.0f}% | {ratio} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.5, help="per run of the lxml variants")
    args = ap.parse_args(argv)
    rounds, seconds, xs_seconds = (2, 0.2, 0.3) if args.quick else (args.rounds, args.seconds, 2.0)
    result = run(rounds, seconds, xs_seconds)
    print(table(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"raw results: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
