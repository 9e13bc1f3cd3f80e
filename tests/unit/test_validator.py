"""Validator.validate(): the verdict, the header facts and errors that never quote the document."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest

from hub.domain.bericht import Validatie
from hub.domain.catalogue import Rol
from hub.domain.errors import ErrorCode
from hub.validation import SchemaRegistry, Validator
from tests.unit.validation_samples import (
    BSN,
    PROJECT,
    RELEASES,
    SHARED,
    antwoord,
    fake_release,
    releases_toml,
)

DAY = date(2025, 6, 1)
KNOWN_INVALID = {"JW315.xml", "JW318.xml"}  # defects of the published examples (SHARED/README.md)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(SchemaRegistry.load(RELEASES))


def reasons(v: Validatie) -> str:
    return " | ".join(f.reason for f in v.errors)


def test_valid_antwoord(validator: Validator) -> None:
    v = validator.validate(antwoord(afzender="0363", ontvanger="87654321", identificatie="A-7"), on=DAY)
    assert v.valid and v.code is None and v.errors == ()
    assert v.bericht is not None
    b = v.bericht
    assert (b.type.naam, b.release) == ("WMO319", "3.2")
    kop = b.kop
    assert (kop.berichtcode, kop.berichtversie, kop.berichtsubversie) == ("482", "3", "2")
    assert (kop.afzender, kop.ontvanger) == ("0363", "87654321")
    assert (kop.identificatie.identificatie, kop.identificatie.dagtekening) == ("A-7", date(2024, 3, 1))
    assert kop.retour is None and kop.verwijzing is None
    assert validator.validate(antwoord("ijw"), on=DAY).bericht is not None


def _examples() -> list[Path]:
    return sorted(SHARED.glob("*/voorbeelden/*.xml")) if SHARED.is_dir() else []


@pytest.mark.skipif(not _examples(), reason="no ../shared/istandaarden examples")
@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.name)
def test_published_examples(validator: Validator, path: Path) -> None:
    v = validator.validate(path.read_bytes(), on=DAY)
    if path.name in KNOWN_INVALID:
        assert v.code is ErrorCode.SCHEMA_INVALID
        assert v.type is not None and v.kop is not None  # still reported as far as readable
        assert all(f.line and f.path and f.path.startswith("/Bericht/") for f in v.errors)
        return
    assert v.bericht is not None, v.errors
    b = v.bericht
    assert b.type.naam == path.stem and b.kop.berichtcode == b.type.berichtcode
    text = path.read_text(encoding="utf-8")
    assert f">{b.kop.afzender}</" in text and f">{b.kop.ontvanger}</" in text
    if b.type.rol is Rol.RETOUR:
        assert b.kop.retour is not None and f">{b.kop.retour.identificatie}</" in text
        assert b.identiteit == b.kop.retour
    if b.type.rol is Rol.ANTWOORD:
        assert b.kop.verwijzing is not None and b.beantwoordt == b.kop.verwijzing


@pytest.mark.skipif(not (SHARED / "ijw-3.2").is_dir(), reason="no ../shared/istandaarden")
def test_retour_and_antwoord_facts(validator: Validator) -> None:
    jw302 = validator.validate((SHARED / "ijw-3.2/voorbeelden/JW302.xml").read_bytes(), on=DAY).bericht
    assert jw302 is not None and jw302.kop.retour is not None
    retour = jw302.kop.retour
    assert (retour.identificatie, retour.dagtekening) == ("9452b7eb-c87", date(2023, 7, 16))
    assert jw302.afzender == "42420001" and jw302.ontvanger == "0384"  # IV028: header of the heenbericht
    jw325 = validator.validate((SHARED / "ijw-3.2/voorbeelden/JW325.xml").read_bytes(), on=DAY).bericht
    assert jw325 is not None and jw325.kop.verwijzing is not None
    verwijzing = jw325.kop.verwijzing
    assert (verwijzing.identificatie, verwijzing.dagtekening) == ("765432198", date(2023, 5, 7))


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        (antwoord(afzender="38"), "/Bericht/Header/Afzender", "pattern [0-9]{4}"),
        (antwoord(ontvanger="1234567890"), "/Bericht/Header/Ontvanger", "maximum of 8"),
        (antwoord(verzoek_antwoord="7"), "/Bericht/Antwoord/VerzoekAntwoord", "allowed values: 1, 2"),
        (antwoord(dagtekening="2024-02-30"), "/Bericht/Header/BerichtIdentificatie/Dagtekening",
         "YYYY-MM-DD"),
        (antwoord().replace(b"<m:ReferentieAanbieder>REF-1</m:ReferentieAanbieder>", b""),
         "/Bericht/Antwoord/VerzoekAntwoord", "expected: ReferentieAanbieder"),
        (antwoord().replace(b"</m:Antwoord>", b"<m:Extra>1</m:Extra></m:Antwoord>"),
         "/Bericht/Antwoord/Extra", "not expected"),
        (antwoord().replace(b"<m:Antwoord>", b"<m:Antwoord>loose text"), "/Bericht/Antwoord",
         "text is not allowed"),
    ],
)
def test_schema_errors_have_line_path_reason(validator: Validator, doc: bytes, path: str, words: str) -> None:
    v = validator.validate(doc, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID and not v.valid
    assert v.type is not None and v.type.naam == "WMO319" and v.release == "3.2"
    fout = v.errors[0]
    assert fout.path == path
    assert fout.line is not None and doc.splitlines()[fout.line - 1].strip()
    assert words in fout.reason


def test_xmlschema_explains_position_where_libxml2_does_not(validator: Validator) -> None:
    extra = b"<m:RedenAfwijzingVerzoek>1</m:RedenAfwijzingVerzoek><m:X/></m:Antwoord>"
    doc = antwoord().replace(b"</m:Antwoord>", extra)
    v = validator.validate(doc, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID
    assert "position 4 in Antwoord" in v.errors[-1].reason


def test_default_namespace_documents_get_readable_paths(validator: Validator) -> None:
    doc = antwoord(verzoek_antwoord="9").replace(b"m:", b"").replace(b"xmlns:m=", b"xmlns=")
    v = validator.validate(doc, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID
    assert v.errors[0].path == "/Bericht/Antwoord/VerzoekAntwoord"


def test_no_document_value_in_any_reason(validator: Validator) -> None:
    values = ("123456782", "99990000612", BSN)
    doc = antwoord(afzender=values[0], ontvanger=values[1], referentie=BSN + " " * 40, verzoek_antwoord="8")
    v = validator.validate(doc, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID and len(v.errors) >= 3
    text = reasons(v)
    for value in values:
        assert value not in text
    assert not re.search(r"\d{9}", text)


@pytest.mark.skipif(not (SHARED / "ijw-3.2").is_dir(), reason="no ../shared/istandaarden")
def test_bsn_never_in_reasons(validator: Validator) -> None:
    doc = (SHARED / "ijw-3.2/voorbeelden/JW301.xml").read_bytes().replace(b">999900006<", b">12345678<")
    v = validator.validate(doc, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID
    assert v.errors[0].path == "/Bericht/Client/Bsn"
    assert "12345678" not in reasons(v) and "pattern [0-9]{9}" in reasons(v)


def test_header_mismatch(validator: Validator) -> None:
    v = validator.validate(antwoord(code="483", subversie="1"), on=DAY)
    assert v.code is ErrorCode.HEADER_MISMATCH
    assert "BerichtCode 482" in reasons(v) and "BerichtSubversie 2" in reasons(v)
    assert "483" not in reasons(v)
    assert v.type is not None and v.type.naam == "WMO319" and v.kop is not None and v.kop.berichtcode == "483"


def test_unknown_namespace_is_named(validator: Validator) -> None:
    v = validator.validate(antwoord(namespace="urn:example:other"), on=DAY)
    assert v.code is ErrorCode.UNKNOWN_MESSAGE and "urn:example:other" in reasons(v)


def test_root_must_be_bericht(validator: Validator) -> None:
    v = validator.validate(antwoord().replace(b"m:Bericht", b"m:Brief"), on=DAY)
    assert v.code is ErrorCode.UNKNOWN_MESSAGE


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"<m:Bericht xmlns:m='urn:x'>", ErrorCode.NOT_WELL_FORMED),
        (b"%PDF-1.4 not xml", ErrorCode.NOT_WELL_FORMED),
        (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', ErrorCode.HOSTILE_XML),
        (b"<a>" * 100 + b"</a>" * 100, ErrorCode.HOSTILE_XML),
    ],
)
def test_broken_and_hostile(validator: Validator, data: bytes, code: ErrorCode) -> None:
    v = validator.validate(data, on=DAY)
    assert v.code is code and v.bericht is None and v.errors


def test_too_large() -> None:
    small = Validator(SchemaRegistry.load(RELEASES), max_bytes=500)
    assert small.validate(antwoord(), on=DAY).code is ErrorCode.TOO_LARGE


def test_deep_document_in_a_known_namespace_is_hostile(validator: Validator) -> None:
    deep = antwoord().replace(b"<m:Antwoord>", b"<m:Antwoord>" + b"<m:X>" * 80 + b"</m:X>" * 80)
    assert validator.validate(deep, on=DAY).code is ErrorCode.HOSTILE_XML


def test_release_windows_and_bundle_by_configuration(tmp_path: Path) -> None:
    bundle = fake_release(PROJECT / "xsd" / "iwmo-3.2", tmp_path / "iwmo-3.3", "3.3")
    releases = releases_toml(
        tmp_path,
        {"standaard": "iWmo", "release": "3.2", "folder": str(PROJECT / "xsd" / "iwmo-3.2"),
         "accepted_from": "2023-01-01", "accepted_until": "2025-12-31"},
        {"standaard": "iWmo", "release": "3.3", "folder": str(bundle), "accepted_from": "2026-01-01"},
    )
    validator = Validator(SchemaRegistry.load(releases))
    new = antwoord(release="3_3", subversie="3")
    old = antwoord()
    assert validator.validate(old, on=date(2025, 12, 31)).valid
    assert validator.validate(new, on=date(2026, 1, 1)).valid
    v = validator.validate(new, on=date(2025, 12, 31))
    assert v.code is ErrorCode.RELEASE_NOT_ACCEPTED
    assert "accepts iWmo 3.2" in reasons(v) and "2026-01-01" in reasons(v)
    assert v.type is not None and v.release == "3.3"
    v = validator.validate(old, on=date(2026, 1, 1))
    assert v.code is ErrorCode.RELEASE_NOT_ACCEPTED and "accepts iWmo 3.3" in reasons(v)
    assert validator.validate(new, on=date(2026, 1, 1)).bericht is not None
    assert validator.validate(antwoord(release="3_3"), on=date(2026, 1, 1)).code is (
        ErrorCode.HEADER_MISMATCH  # a 3.3 message must say BerichtSubversie 3
    )


def test_concurrent_validation_keeps_errors_apart(validator: Validator) -> None:
    docs = [antwoord(), antwoord(afzender="1"), antwoord(verzoek_antwoord="5"), antwoord(ontvanger="x")] * 50

    def run(doc: bytes) -> tuple[bool, tuple[str | None, ...]]:
        v = validator.validate(doc, on=DAY)
        return v.valid, tuple(f.path for f in v.errors)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, docs))
    expected = [run(d) for d in docs[:4]] * 50
    assert results == expected
    assert expected[0] == (True, ()) and expected[1] == (False, ("/Bericht/Header/Afzender",))


PROJECT_EXAMPLES = sorted((PROJECT / "examples" / "berichten").glob("*/*.xml"))


@pytest.mark.parametrize("path", PROJECT_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_message_type_example(validator: Validator, path: Path) -> None:
    from tests.support.berichten import with_header

    data = path.read_bytes()
    v = validator.validate(data, on=DAY)
    assert v.bericht is not None, v.errors
    b = v.bericht
    assert b.type.naam == path.stem and b.kop.berichtcode == b.type.berichtcode
    assert path.parent.name == f"{b.type.standaard.slug}-{b.release}"
    changed = {"afzender": b.kop.afzender, "identificatie": "NEW-ID-1", "dagtekening": "2025-02-03"}
    if b.type.rol is Rol.RETOUR:
        changed |= {"identificatie_retour": "RET-9", "dagtekening_retour": "2025-02-04"}
    if b.type.rol is Rol.ANTWOORD:
        changed |= {"verwijzing_identificatie": "DECL-5", "verwijzing_dagtekening": "2025-01-31"}
    kop = validator.validate(with_header(data, **changed), on=DAY).bericht
    assert kop is not None
    k = kop.kop
    assert (k.identificatie.identificatie, k.identificatie.dagtekening) == ("NEW-ID-1", date(2025, 2, 3))
    if b.type.rol is Rol.RETOUR:
        assert k.retour is not None
        assert (k.retour.identificatie, k.retour.dagtekening) == ("RET-9", date(2025, 2, 4))
        assert kop.identiteit == k.retour
    else:
        assert k.retour is None
    if b.type.rol is Rol.ANTWOORD:
        assert k.verwijzing is not None
        assert (k.verwijzing.identificatie, k.verwijzing.dagtekening) == ("DECL-5", date(2025, 1, 31))
    else:
        assert k.verwijzing is None


def test_examples_cover_the_catalogue() -> None:
    from hub.domain.catalogue import CATALOGUE

    assert {p.stem for p in PROJECT_EXAMPLES} >= {t.naam for t in CATALOGUE}


@pytest.mark.parametrize("path", PROJECT_EXAMPLES[::5], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_broken_examples_never_leak_the_bsn(validator: Validator, path: Path) -> None:
    data = path.read_bytes()
    bsns = set(re.findall(rb"<(?:\w+:)?Bsn>(\d+)<", data))
    broken = re.sub(rb"(<(?:\w+:)?Bsn>)(\d+)(<)", rb"\g<1>\g<2>0\g<3>", data)  # 10 digits
    broken = broken.replace(b"</", b"<Unexpected/></", 1)  # plus a structure error
    v = validator.validate(broken, on=DAY)
    assert v.code is ErrorCode.SCHEMA_INVALID
    text = reasons(v)
    for bsn in bsns:
        assert bsn.decode() not in text


def test_fast_and_slow_header_paths_agree() -> None:
    fast = Validator(SchemaRegistry.load(RELEASES))
    slow = Validator(SchemaRegistry.load(RELEASES))
    assert all(entry.header_slots is not None for entry in fast.registry.entries)
    for entry in slow.registry.entries:
        entry.header_slots = None  # as for an XSD whose Header order is not fixed
    for path in PROJECT_EXAMPLES:
        data = path.read_bytes()
        a, b = fast.validate(data, on=DAY), slow.validate(data, on=DAY)
        assert a.bericht is not None and a == b


def test_header_positions_stop_at_the_first_optional_element() -> None:
    from lxml import etree

    from hub.validation.registry import header_positions

    xsd = etree.fromstring(
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:complexType name="Header"><xs:sequence>'
        b'<xs:element name="BerichtCode"/><xs:element name="Extra" minOccurs="0"/>'
        b'<xs:element name="Afzender"/></xs:sequence></xs:complexType></xs:schema>'
    )
    assert header_positions(xsd) == {"BerichtCode": 0}
