"""The committed xsd/ folders are exactly what the model generates, and they cover the catalogue."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from hub.domain.catalogue import CATALOGUE, Standaard
from tools.xsdgen.generate import generate_all
from tools.xsdgen.model import UNBOUNDED, parse_tree, with_retourcodes
from tools.xsdgen.profiles import PROFILES

REPO = Path(__file__).resolve().parents[2]
XSD = REPO / "xsd"
XS = "{http://www.w3.org/2001/XMLSchema}"
IWMO_WITHOUT_PUBLIC_XSD = {"WMO302", "WMO306", "WMO308", "WMO316", "WMO318", "WMO320", "WMO325"}
RELEASE_KEYS = {"standaard", "release", "folder", "accepted_from", "accepted_until", "modelled_by_project"}


def test_committed_schemas_equal_the_generated_ones(tmp_path: Path) -> None:
    written = generate_all(tmp_path)
    assert len(written) == sum(len(CATALOGUE.of(p.standaard)) + 1 for p in PROFILES)
    for p in PROFILES:
        generated = {f.name: f.read_bytes() for f in (tmp_path / p.folder).iterdir()}
        committed = {f.name: f.read_bytes() for f in (XSD / p.folder).iterdir()}
        assert sorted(committed) == sorted(generated), f"{p.folder}: files differ; run python -m tools.xsdgen"
        stale = [name for name in generated if generated[name] != committed[name]]
        assert not stale, f"{p.folder}: {stale} differ from the model; run python -m tools.xsdgen"


def _releases() -> list[dict[str, object]]:
    with (XSD / "releases.toml").open("rb") as fh:
        releases = tomllib.load(fh)["release"]
    assert isinstance(releases, list)
    return releases


def test_releases_toml_describes_every_folder() -> None:
    releases = _releases()
    for r in releases:
        assert set(r) <= RELEASE_KEYS and RELEASE_KEYS - {"accepted_until"} <= set(r), r
        Standaard(str(r["standaard"]))
        assert isinstance(r["accepted_from"], date | str)
        date.fromisoformat(str(r["accepted_from"]))
        assert (XSD / str(r["folder"]) / "basisschema.xsd").is_file()
    by_folder = {r["folder"]: r for r in releases}
    for p in PROFILES:
        r = by_folder[p.folder]
        assert (r["standaard"], r["release"], r["modelled_by_project"]) == (
            p.standaard.value,
            p.release,
            p.modelled,
        )


def _fixed_code(schema: Path) -> tuple[str, str]:
    """The target namespace and the BerichtCode a message schema fixes in its Header."""
    root = etree.parse(str(schema)).getroot()
    ns = root.get("targetNamespace", "")
    bericht = root.find(f"{XS}element[@name='Bericht']")
    assert bericht is not None, schema
    root_type = bericht.get("type", "").split(":")[-1]
    header_ref = root.find(f"{XS}complexType[@name='{root_type}']/{XS}sequence/{XS}element[@name='Header']")
    assert header_ref is not None, schema
    header_type = header_ref.get("type", "").split(":")[-1]
    pattern = root.find(
        f"{XS}complexType[@name='{header_type}']/{XS}sequence/{XS}element[@name='BerichtCode']"
        f"/{XS}simpleType/{XS}restriction/{XS}pattern"
    )
    assert pattern is not None, schema
    return ns, pattern.get("value", "")


def test_every_catalogue_entry_has_exactly_one_schema_fixing_its_code() -> None:
    found: dict[tuple[Standaard, str], list[Path]] = {}
    for r in _releases():
        for schema in sorted((XSD / str(r["folder"])).glob("*.xsd")):
            if schema.name == "basisschema.xsd":
                continue
            ns, code = _fixed_code(schema)
            _, std_slug, _, msg_slug, _ = ns.removeprefix("http://").split("/")
            t = CATALOGUE.find_by_slug(std_slug, msg_slug)
            assert t is not None, f"{schema}: {ns} is not in the catalogue"
            assert schema.stem == t.naam, schema
            assert code == t.berichtcode, f"{schema}: BerichtCode {code}, catalogue says {t.berichtcode}"
            found.setdefault((t.standaard, t.naam), []).append(schema)
    for t in CATALOGUE:
        assert len(found.get((t.standaard, t.naam), [])) == 1, f"{t.naam}: {found.get((t.standaard, t.naam))}"


@pytest.mark.parametrize("folder", [p.folder for p in PROFILES])
def test_generated_schemas_compile(folder: str) -> None:
    for schema in sorted((XSD / folder).glob("*.xsd")):
        etree.XMLSchema(etree.parse(str(schema)))


def test_modelled_schemas_say_so() -> None:
    for p in PROFILES:
        for schema in (XSD / p.folder).glob("*.xsd"):
            assert ("MODELLED BY THIS PROJECT" in schema.read_text(encoding="utf-8")) == (
                p.modelled or (p.standaard is Standaard.IWMO and schema.stem in IWMO_WITHOUT_PUBLIC_XSD)
            ), schema


def test_tree_notation() -> None:
    tree = parse_tree(
        """
Client  # the client
  Bsn                 LDT_BurgerServicenummer
  Extra?              LDT_JaNee  @ijw
  Items
    Item+
      Code            LDT_ProductCode pattern=[A-Z]+
"""
    )
    (client,) = tree
    assert client.is_record and client.doc == "the client"
    bsn, extra, items = client.children
    assert (bsn.type, bsn.min_occurs, bsn.max_occurs) == ("LDT_BurgerServicenummer", 1, 1)
    assert (extra.min_occurs, extra.only) == (0, frozenset({"ijw"}))
    assert items.is_list and items.children[0].max_occurs is UNBOUNDED
    assert items.children[0].children[0].pattern == "[A-Z]+"
    retour = with_retourcodes(client)
    assert [c.name for c in retour.children] == ["Bsn", "Extra", "Items", "RetourCodes"]
    assert [c.name for c in retour.children[2].children] == ["Item"]  # a list wrapper gets none
    assert [c.name for c in retour.children[2].children[0].children] == ["Code", "RetourCodes"]


@pytest.mark.parametrize(
    "text", ["Client", "Bsn LDT_X\n  Child LDT_Y", "A\n    B LDT_X", "1bad LDT_X", "A LDT_X pattern"]
)
def test_tree_notation_rejects_mistakes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tree(text)
