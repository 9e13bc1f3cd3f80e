"""Micro-benchmark of RoutingRules.resolve: µs per call with the full gemeente list and 100, 1,000
and 10,000 aanbieders. Run: .venv/bin/python bench/routing.py [--rounds N]

The mix covers the paths the intake takes: gemeente -> aanbieder, aanbieder -> gemeente, a merged
gemeente, a retour with answer_to, iEb -> CAK and a run-time registered aanbieder. Timings on a shared
VM vary by tens of percent (see /work/shared/design/perf-limits.md): compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from hub.adapters.routing_files import load_rules
from hub.domain.bericht import Bericht, BerichtIdentificatie, Kop
from hub.domain.catalogue import CATALOGUE, Rol
from hub.domain.directory import ChannelRule, Kanaal, Party, Period
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.routing import RoutingRules

RULES_DIR = Path(__file__).resolve().parent.parent / "routing_rules"
ON = date(2026, 6, 1)


def bericht(naam: str, afzender: str, ontvanger: str) -> Bericht:
    t = next(t for t in CATALOGUE if t.naam == naam)
    ident = BerichtIdentificatie("BENCH-1", ON)
    retour = ident if t.rol is Rol.RETOUR else None
    return Bericht(t, "3.2", Kop(t.berichtcode, "3", "2", afzender, ontvanger, ident, retour=retour))


def rules_with(aanbieders: int) -> RoutingRules:
    base = load_rules(RULES_DIR)
    codes = (f"{50_000_000 + i:08d}" for i in range(aanbieders))
    extra = [Party(PartyRef(PartyKind.AANBIEDER, code), f"Aanbieder {code}") for code in codes]
    # Every tenth aanbieder switches to push halfway: more than one segment per timeline.
    channels = [
        ChannelRule(p.ref, Kanaal.PUSH, f"https://a{i}.example/in", Period(date(2026, 1, 1)))
        for i, p in enumerate(extra)
        if i % 10 == 0
    ]
    return RoutingRules(
        base.version, [*base.parties, *extra], base.mergers, [*base.channels, *channels], base.sends_for
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000, help="resolve calls per round and case")
    args = parser.parse_args()
    registered_party = Party(PartyRef(PartyKind.AANBIEDER, "99999999"), "Geregistreerd")

    def registered(ref: PartyRef) -> Party | None:
        return registered_party if ref == registered_party.ref else None

    heads = "  ".join(f"{c:>12}" for c in CASES)
    print(f"{'aanbieders':>10} {'build ms':>9}  {heads}   (µs per resolve, median of rounds)")
    for n in (100, 1_000, 10_000):
        t0 = time.perf_counter()
        rules = rules_with(n)
        build_ms = (time.perf_counter() - t0) * 1000
        last = f"{50_000_000 + n - 1:08d}"
        cells = []
        for case in CASES:
            b, answer_to = CASES[case](last)
            runs = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    rules.resolve(b, ON, answer_to=answer_to, registered=registered)
                runs.append((time.perf_counter() - t0) / args.calls * 1e6)
            cells.append(f"{statistics.median(runs):>12.2f}")
        print(f"{n:>10} {build_ms:>9.0f}  " + "  ".join(cells))


Case = Callable[[str], tuple[Bericht, PartyRef | None]]
CASES: dict[str, Case] = {
    "gem->aanb": lambda last: (bericht("JW301", "0363", last), None),
    "aanb->gem": lambda last: (bericht("WMO315", last, "0599"), None),
    "merged gem": lambda last: (bericht("JW315", last, "0501"), None),
    "retour+ans": lambda last: (bericht("JW302", "0363", last), PartyRef(PartyKind.GEMEENTE, "0363")),
    "iEb->CAK": lambda last: (bericht("WMO405", "0363", "CAK"), None),
    "registered": lambda last: (bericht("JW301", "0363", "99999999"), None),
}


if __name__ == "__main__":
    main()
