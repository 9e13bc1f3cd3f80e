"""Where the reference material and the project's schemas are, and compiled schemas (once per session)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO.parent / "shared" / "istandaarden"  # <repo>/../shared/istandaarden, absent in a fresh clone
XSD = REPO / "xsd"
EXAMPLES = REPO / "examples" / "berichten"
FOLDERS = ("iwmo-3.2", "ijw-3.2")

# Published examples that are invalid as published (README of the reference material):
# JW315 has the impossible date 2027-06-31, JW318 a RetourCode outside RetourCodes.
INVALID_AS_PUBLISHED = {("ijw-3.2", "JW315"), ("ijw-3.2", "JW318")}


def reference_names(folder: str) -> list[str]:
    """The message names that have a reference XSD in one folder (WMO301, JW302 ...)."""
    return sorted(p.stem for p in (REFERENCE / folder).glob("*.xsd") if p.stem != "basisschema")


def _compile(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


@cache
def ours(folder: str, naam: str) -> etree.XMLSchema:
    return _compile(XSD / folder / f"{naam}.xsd")


@cache
def theirs(folder: str, naam: str) -> etree.XMLSchema:
    return _compile(REFERENCE / folder / f"{naam}.xsd")


def verdict(schema: etree.XMLSchema, document: bytes) -> bool:
    """Valid or not; a document that is not even well-formed XML is invalid for every schema."""
    try:
        doc = etree.fromstring(document, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return False
    return bool(schema.validate(doc))
