"""The schema registry: loading releases, acceptance windows, and refusing bad configuration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from hub.domain.catalogue import CATALOGUE, Standaard
from hub.validation.registry import RegistryError, SchemaRegistry
from tests.unit.validation_samples import PROJECT, RELEASES, fake_release, ns, releases_toml

XSD = PROJECT / "xsd"


def iwmo(folder: Path | str, release: str = "3.2", **window: str) -> dict[str, object]:
    return {"standaard": "iWmo", "release": release, "folder": str(folder), **window}


@pytest.fixture(scope="module")
def iwmo33(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_release(XSD / "iwmo-3.2", tmp_path_factory.mktemp("bundle") / "iwmo-3.3", "3.3")


def test_project_releases_load_every_catalogue_type() -> None:
    registry = SchemaRegistry.load(RELEASES)
    assert {(e.type.standaard, e.type.naam) for e in registry.entries} == {
        (t.standaard, t.naam) for t in CATALOGUE
    }
    entry = registry.lookup(ns("iwmo", "wmo301"), date(2025, 6, 1))
    assert entry is not None
    assert (entry.type.naam, entry.release.release, entry.release.versie) == ("WMO301", "3.2", ("3", "2"))
    assert registry.lookup(ns("ieb", "wmo405", "1_0"), date(2025, 6, 1)) is not None
    assert registry.lookup("urn:unknown", date(2025, 6, 1)) is None


def test_big_bang_switches_on_a_fixed_date(tmp_path: Path, iwmo33: Path) -> None:
    path = releases_toml(
        tmp_path,
        iwmo(XSD / "iwmo-3.2", accepted_from="2023-01-01", accepted_until="2024-12-31"),
        iwmo(iwmo33, "3.3", accepted_from="2025-01-01"),
    )
    registry = SchemaRegistry.load(path)
    old, new = ns("iwmo", "wmo301"), ns("iwmo", "wmo301", "3_3")
    last_day, first_day = date(2024, 12, 31), date(2025, 1, 1)
    assert [str(r) for r in registry.accepted_on(last_day)] == ["iWmo 3.2"]
    assert [str(r) for r in registry.accepted_on(first_day)] == ["iWmo 3.3"]
    assert registry.lookup(old, last_day) is not None and registry.lookup(new, last_day) is None
    assert registry.lookup(old, first_day) is None and registry.lookup(new, first_day) is not None
    assert registry.accepted_on(date(2022, 12, 31)) == ()


def test_overlap_period_accepts_both(tmp_path: Path, iwmo33: Path) -> None:
    path = releases_toml(
        tmp_path,
        iwmo(XSD / "iwmo-3.2", accepted_from="2023-01-01", accepted_until="2025-03-31"),
        iwmo(iwmo33, "3.3", accepted_from="2025-01-01"),
    )
    registry = SchemaRegistry.load(path)
    during = date(2025, 2, 1)
    assert sorted(str(r) for r in registry.accepted_on(during)) == ["iWmo 3.2", "iWmo 3.3"]
    assert registry.lookup(ns("iwmo", "wmo317"), during) is not None
    assert registry.lookup(ns("iwmo", "wmo317", "3_3"), during) is not None
    assert registry.lookup(ns("iwmo", "wmo317"), date(2025, 4, 1)) is None


def test_same_namespace_in_overlapping_windows_is_refused(tmp_path: Path) -> None:
    path = releases_toml(
        tmp_path,
        iwmo(XSD / "iwmo-3.2", accepted_from="2023-01-01", accepted_until="2025-03-31"),
        iwmo(XSD / "iwmo-3.2", accepted_from="2025-01-01"),
    )
    with pytest.raises(RegistryError, match="overlapping"):
        SchemaRegistry.load(path)


def test_same_namespace_in_consecutive_windows_is_allowed(tmp_path: Path) -> None:
    path = releases_toml(
        tmp_path,
        iwmo(XSD / "iwmo-3.2", accepted_from="2023-01-01", accepted_until="2023-12-31"),
        iwmo(XSD / "iwmo-3.2", accepted_from="2025-01-01"),
    )
    registry = SchemaRegistry.load(path)
    assert registry.lookup(ns("iwmo", "wmo301"), date(2024, 6, 1)) is None
    assert len(registry.candidates(ns("iwmo", "wmo301"))) == 2


def test_folder_is_relative_to_the_releases_file(tmp_path: Path, iwmo33: Path) -> None:
    (tmp_path / "bundles").symlink_to(iwmo33.parent)
    table = iwmo("bundles/iwmo-3.3", "3.3", accepted_from="2025-01-01")
    registry = SchemaRegistry.load(releases_toml(tmp_path, table))
    assert {e.type.standaard for e in registry.entries} == {Standaard.IWMO}


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        SchemaRegistry.load(releases_toml(tmp_path, iwmo(tmp_path / "nope", accepted_from="2023-01-01")))


def test_xsd_that_does_not_compile(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "WMO301.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">'
        '<xs:element name="Bericht" type="NoSuchType"/></xs:schema>'
    )
    with pytest.raises(RegistryError, match=r"WMO301\.xsd.*does not compile"):
        SchemaRegistry.load(releases_toml(tmp_path, iwmo(folder, accepted_from="2023-01-01")))


def test_message_file_without_catalogue_entry(tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "WMO999.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x"/>'
    )
    with pytest.raises(RegistryError, match=r"WMO999.*catalogue"):
        SchemaRegistry.load(releases_toml(tmp_path, iwmo(folder, accepted_from="2023-01-01")))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"standaard": "iXyz", "release": "1.0", "folder": "x", "accepted_from": "2023-01-01"},
            "unknown standaard",
        ),
        ({"standaard": "iWmo", "release": "3.2", "folder": str(XSD / "iwmo-3.2")}, "accepted_from"),
        (iwmo(XSD / "iwmo-3.2", accepted_from="2023-13-01"), "not an ISO date"),
        (iwmo(XSD / "iwmo-3.2", accepted_from="2024-01-01", accepted_until="2023-01-01"), "before"),
    ],
)
def test_bad_tables(tmp_path: Path, table: dict[str, object], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        SchemaRegistry.load(releases_toml(tmp_path, table))


def test_missing_or_empty_releases_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read"):
        SchemaRegistry.load(tmp_path / "none.toml")
    (tmp_path / "empty.toml").write_text("# nothing\n")
    with pytest.raises(RegistryError, match="no \\[\\[release\\]\\]"):
        SchemaRegistry.load(tmp_path / "empty.toml")


def test_explainer_is_built_lazily_and_cached() -> None:
    registry = SchemaRegistry.load(RELEASES)
    entry = registry.entries[0]
    assert entry._explainer is None  # nothing compiled by xmlschema at load
    first = entry.explainer()
    assert entry.explainer() is first
