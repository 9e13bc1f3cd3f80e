"""The generated corpus: mutated variants of our examples and the published ones, with both verdicts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

from tests.unit.conformance.mutations import variants
from tests.unit.conformance.reference import (
    EXAMPLES,
    FOLDERS,
    REFERENCE,
    ours,
    reference_names,
    theirs,
    verdict,
)

ROUNDS = 2  # each mutation applied this many times (with different random choices) per seed document


@dataclass(frozen=True, slots=True)
class Outcome:
    seed: str
    label: str
    document: bytes
    ours: bool
    theirs: bool


def message_types() -> list[tuple[str, str]]:
    return [(folder, naam) for folder in FOLDERS for naam in reference_names(folder)]


@cache
def outcomes(folder: str, naam: str) -> tuple[Outcome, ...]:
    """Every variant of one message type validated by both schemas (computed once per session)."""
    seeds = {"reference example": (REFERENCE / folder / "voorbeelden" / f"{naam}.xml").read_bytes()}
    own = EXAMPLES / folder / f"{naam}.xml"
    if own.is_file():
        seeds["our example"] = own.read_bytes()
    rng = random.Random(f"{folder}/{naam}")  # str seeds are stable across runs and processes
    ours_schema, their_schema = ours(folder, naam), theirs(folder, naam)
    out: list[Outcome] = []
    for n, (seed, document) in enumerate(seeds.items()):
        # length probes on the last seed only (ours where there is one): they are many and systematic
        for label, variant in variants(document, rng, ROUNDS, probe=n == len(seeds) - 1):
            out.append(
                Outcome(seed, label, variant, verdict(ours_schema, variant), verdict(their_schema, variant))
            )
    return tuple(out)


def summary() -> tuple[int, int, int, int]:
    """(variants, valid, invalid, disagreements) over the whole corpus (by the reference verdict)."""
    done = [o for folder, naam in message_types() for o in outcomes(folder, naam)]
    valid = sum(o.theirs for o in done)
    return len(done), valid, len(done) - valid, sum(o.ours != o.theirs for o in done)
