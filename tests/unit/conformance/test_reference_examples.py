"""Every published example gets the same verdict from our schema as from the reference XSD."""

from __future__ import annotations

import pytest

from tests.unit.conformance.reference import (
    FOLDERS,
    INVALID_AS_PUBLISHED,
    REFERENCE,
    ours,
    reference_names,
    theirs,
    verdict,
)

if not REFERENCE.is_dir():
    pytest.skip(f"reference material not found at {REFERENCE}", allow_module_level=True)


@pytest.mark.parametrize("folder", FOLDERS)
def test_published_examples_get_the_same_verdict(folder: str) -> None:
    examples = sorted((REFERENCE / folder / "voorbeelden").glob("*.xml"))
    assert {p.stem for p in examples} == set(reference_names(folder))
    for path in examples:
        document = path.read_bytes()
        expected = (folder, path.stem) not in INVALID_AS_PUBLISHED
        assert verdict(theirs(folder, path.stem), document) is expected, f"reference XSD on {path.name}"
        assert verdict(ours(folder, path.stem), document) is expected, f"our schema on {path.name}"


def test_the_invalid_published_examples_are_rejected_by_both() -> None:
    """JW315 has the impossible date 2027-06-31; JW318 has a RetourCode outside RetourCodes."""
    jw315 = (REFERENCE / "ijw-3.2" / "voorbeelden" / "JW315.xml").read_bytes()
    jw318 = (REFERENCE / "ijw-3.2" / "voorbeelden" / "JW318.xml").read_bytes()
    assert b"2027-06-31" in jw315
    for naam, document in (("JW315", jw315), ("JW318", jw318)):
        assert not verdict(ours("ijw-3.2", naam), document)
        assert not verdict(theirs("ijw-3.2", naam), document)
    # and once repaired, both accept them: the defects above are the only ones
    fixed_315 = jw315.replace(b"2027-06-31", b"2027-06-30")
    assert verdict(ours("ijw-3.2", "JW315"), fixed_315) and verdict(theirs("ijw-3.2", "JW315"), fixed_315)
