"""A corpus of mutated messages: our schemas and the reference XSDs give the same verdict on every one.

The variants come from our examples and the published ones, by mutations that mirror how senders break
messages (wrong BerichtCode/Versie, missing, extra, duplicated or reordered elements, bad dates, wrong
namespace, values out of range or too long, unknown codes, bad AGB/gemeente/BSN), plus changes within the
allowed range. One test per message type keeps the output small; it lists every disagreement it finds.
Where one is found, fix the model (tools/xsdgen/spec), not this test.
"""

from __future__ import annotations

import pytest

from tests.unit.conformance.corpus import message_types, outcomes, summary
from tests.unit.conformance.reference import REFERENCE

if not REFERENCE.is_dir():
    pytest.skip(f"reference material not found at {REFERENCE}", allow_module_level=True)

MIN_VARIANTS = 500


@pytest.mark.parametrize(("folder", "naam"), message_types(), ids=lambda v: str(v))
def test_same_verdict_on_every_variant(folder: str, naam: str) -> None:
    results = outcomes(folder, naam)
    disagreements = [
        f"{o.seed}, {o.label}: ours={'valid' if o.ours else 'invalid'}, "
        f"reference={'valid' if o.theirs else 'invalid'}"
        for o in results
        if o.ours != o.theirs
    ]
    assert not disagreements, "\n".join(disagreements)
    # the corpus for each type has teeth: both kinds of verdict occur
    assert any(o.theirs for o in results) and not all(o.theirs for o in results)


def test_corpus_size_and_summary() -> None:
    n, valid, invalid, disagreements = summary()
    print(
        f"conformance corpus: {n} variants, {valid} valid, {invalid} invalid, {disagreements} disagreements"
    )
    assert n >= MIN_VARIANTS
    assert valid >= 50 and invalid >= 300
    assert disagreements == 0
