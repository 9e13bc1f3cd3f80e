"""Each of the 34 example messages is valid against our schema, and typical breakages of it are not."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from hub.domain.catalogue import CATALOGUE, BerichtType, Rol
from hub.domain.parties import is_bsn
from tests.support.berichten import EXAMPLES, declaratie, example, with_header

XSD = Path(__file__).resolve().parents[2] / "xsd"
FOLDER = {"iWmo": "iwmo-3.2", "iJw": "ijw-3.2", "iEb": "ieb-1.0", "iPgb": "ipgb-1.0"}
TYPES = list(CATALOGUE)


@cache
def schema(folder: str, naam: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD / folder / f"{naam}.xsd")))


def valid(t: BerichtType, document: bytes) -> bool:
    return bool(schema(FOLDER[t.standaard.value], t.naam).validate(etree.fromstring(document)))


def _id(t: BerichtType) -> str:
    return t.naam


def _header_child(root: etree._Element, name: str) -> etree._Element:
    found = [c for c in root[0] if etree.QName(c).localname == name]
    assert len(found) == 1, name
    return found[0]


def test_there_is_one_example_per_catalogue_type() -> None:
    files = {(p.parent.name, p.stem) for p in EXAMPLES.glob("*/*.xml")}
    assert files == {(FOLDER[t.standaard.value], t.naam) for t in TYPES}


@pytest.mark.parametrize("t", TYPES, ids=_id)
def test_example_is_valid_and_realistic(t: BerichtType) -> None:
    document = example(FOLDER[t.standaard.value], t.naam)
    assert valid(t, document), schema(FOLDER[t.standaard.value], t.naam).error_log
    root = etree.fromstring(document)
    assert _header_child(root, "BerichtCode").text == t.berichtcode
    for bsn in root.iter("{*}Bsn"):
        assert bsn.text is not None and is_bsn(bsn.text), bsn.text
    # made-up parties only: gemeente 0363/0599, aanbieder 12345678/87654321, the national bodies by code
    parties = {"0363", "0599", "12345678", "87654321", "CAK", "VWSPGB"}
    assert {_header_child(root, "Afzender").text, _header_child(root, "Ontvanger").text} <= parties


def _without_afzender(root: etree._Element) -> None:
    root[0].remove(_header_child(root, "Afzender"))


def _wrong_code(root: etree._Element) -> None:
    _header_child(root, "BerichtCode").text = "999"


def _bad_dagtekening(root: etree._Element) -> None:
    el = _header_child(root, "BerichtIdentificatie")[1]
    assert etree.QName(el).localname == "Dagtekening"
    el.text = "2023-02-30"


def _wrong_namespace(root: etree._Element) -> None:
    for el in root.iter():
        ns = etree.QName(el).namespace
        if ns and not ns.endswith("/basisschema/schema"):
            el.tag = f"{{{ns.replace('/schema', '/x/schema')}}}{etree.QName(el).localname}"


BREAKAGES: dict[str, Callable[[etree._Element], None]] = {
    "missing Afzender": _without_afzender,
    "wrong BerichtCode": _wrong_code,
    "bad Dagtekening": _bad_dagtekening,
    "wrong namespace": _wrong_namespace,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
@pytest.mark.parametrize("t", TYPES, ids=_id)
def test_typical_breakages_are_invalid(t: BerichtType, breakage: str) -> None:
    root = etree.fromstring(example(FOLDER[t.standaard.value], t.naam))
    BREAKAGES[breakage](root)
    assert not valid(t, etree.tostring(root))


def test_another_types_code_is_invalid() -> None:
    """A message carrying the BerichtCode of its retour (a classic copy-paste mistake)."""
    for t in TYPES:
        if t.answered_by is not None:
            answer = CATALOGUE.answered_by(t)
            assert answer is not None
            root = etree.fromstring(example(FOLDER[t.standaard.value], t.naam))
            _header_child(root, "BerichtCode").text = answer.berichtcode
            assert not valid(t, etree.tostring(root)), t.naam


@pytest.mark.parametrize("t", TYPES, ids=_id)
def test_with_header_keeps_the_message_valid(t: BerichtType) -> None:
    document = example(FOLDER[t.standaard.value], t.naam)
    changed = with_header(document, identificatie="NIEUW-1", dagtekening="2024-12-31")
    if t.rol is Rol.RETOUR:
        changed = with_header(changed, identificatie_retour="RET-9", dagtekening_retour="2025-01-02")
    if t.rol is Rol.ANTWOORD:
        changed = with_header(changed, verwijzing_identificatie="DECL-7", verwijzing_dagtekening="2024-12-01")
    assert valid(t, changed)
    root = etree.fromstring(changed)
    assert _header_child(root, "BerichtIdentificatie")[0].text == "NIEUW-1"
    if t.rol is Rol.RETOUR:
        assert _header_child(root, "IdentificatieRetour").text == "RET-9"
    if t.rol is Rol.ANTWOORD:
        assert _header_child(root, "DeclaratieIdentificatie")[0].text == "DECL-7"


def test_with_header_rejects_fields_the_message_lacks() -> None:
    with pytest.raises(ValueError):
        with_header(example("iwmo-3.2", "WMO301"), identificatie_retour="X")
    with pytest.raises(ValueError):
        with_header(example("ijw-3.2", "JW302"), verwijzing_identificatie="X")


def test_with_header_changes_parties() -> None:
    changed = with_header(example("iwmo-3.2", "WMO301"), afzender="0599", ontvanger="87654321")
    root = etree.fromstring(changed)
    assert (_header_child(root, "Afzender").text, _header_child(root, "Ontvanger").text) == (
        "0599",
        "87654321",
    )


@pytest.mark.parametrize(("standaard", "naam"), [("iWmo", "WMO323"), ("ijw", "JW323")])
def test_declaratie_builder(standaard: str, naam: str) -> None:
    document = declaratie(standaard, 1000)
    assert 300_000 < len(document) < 1_500_000
    t = next(t for t in TYPES if t.naam == naam)
    assert valid(t, document)
    root = etree.fromstring(document)
    assert len(root.findall(".//{*}Prestatie")) == 1000
    bedragen = sum(int(b.text or "") for b in root.iterfind(".//{*}IngediendBedrag/{*}Bedrag"))
    assert root.findtext(".//{*}TotaalIngediendBedrag/{*}TotaalBedrag") == str(bedragen)
    bsns = [b.text for b in root.iter("{*}Bsn")]
    assert len(set(bsns)) == len(bsns) == 100
    assert valid(t, declaratie(standaard, 1, prestaties_per_client=3))
    with pytest.raises(ValueError):
        declaratie("iEb", 1)
