"""An official bundle replaces a modelled release by configuration alone: its own folder, file names,
namespace, release number and BerichtCodes, named in a [[release]] table of releases.toml."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from hub.domain.errors import ErrorCode
from hub.settings import PROJECT_ROOT
from hub.validation.registry import SchemaRegistry
from hub.validation.validator import Validator

XSD = PROJECT_ROOT / "xsd"


def _official_ieb(tmp_path: Path) -> Path:
    """A stand-in for an official iEb 2.0 bundle: other namespace, file name and BerichtCode."""
    folder = tmp_path / "ieb-official-2.0"
    folder.mkdir()
    for source in (XSD / "ieb-1.0").glob("*.xsd"):
        text = source.read_text().replace("/ieb/1_0/", "/ieb/2_0/")
        if source.name == "WMO405.xsd":
            text = text.replace('<xs:pattern value="905"/>', '<xs:pattern value="123"/>')
            text = text.replace('<xs:pattern value="1"/>', '<xs:pattern value="2"/>', 1)
            (folder / "EigenBijdrage_Start_Stop.xsd").write_text(text)
        else:
            (folder / source.name).write_text(text)
    releases = tmp_path / "releases.toml"
    releases.write_text(
        (XSD / "releases.toml").read_text().replace('folder = "', f'folder = "{XSD}/')
        + f"""
[[release]]
standaard = "iEb"
release = "2.0"
folder = "{folder}"
accepted_from = "2027-01-01"
berichtcodes = {{ WMO405 = "123" }}
files = {{ "EigenBijdrage_Start_Stop.xsd" = "WMO405" }}
"""
    )
    return releases


def test_an_official_bundle_with_other_codes_and_file_names_is_installed_by_configuration(
    tmp_path: Path,
) -> None:
    registry = SchemaRegistry.load(_official_ieb(tmp_path))
    validator = Validator(registry)
    modelled = (PROJECT_ROOT / "examples/berichten/ieb-1.0/WMO405.xml").read_bytes()
    official = (
        modelled.replace(b"/ieb/1_0/", b"/ieb/2_0/")
        .replace(b"<wmo405:BerichtCode>905<", b"<wmo405:BerichtCode>123<")
        .replace(b"<wmo405:BerichtVersie>1<", b"<wmo405:BerichtVersie>2<")
    )
    result = validator.validate(official, on=date(2027, 1, 4))
    assert result.valid, result.errors
    assert result.bericht is not None
    assert (result.bericht.type.naam, result.bericht.release, result.bericht.kop.berichtcode) == (
        "WMO405",
        "2.0",
        "123",
    )
    # The modelled release stays accepted beside it, each with its own code.
    assert validator.validate(modelled, on=date(2027, 1, 4)).valid
    wrong_code = official.replace(b"<wmo405:BerichtCode>123<", b"<wmo405:BerichtCode>905<")
    assert validator.validate(wrong_code, on=date(2027, 1, 4)).code is ErrorCode.HEADER_MISMATCH
    # Before its window opens the official release is refused, naming what is accepted.
    early = validator.validate(official, on=date(2026, 12, 31))
    assert early.code is ErrorCode.RELEASE_NOT_ACCEPTED and "iEb 1.0" in early.errors[0].reason
