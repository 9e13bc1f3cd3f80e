"""`hub validate`: JSON lines and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.entrypoints.cli import main
from tests.unit.validation_samples import RELEASES, antwoord


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, object]]]:
    code = main(["validate", "--releases", str(RELEASES), "--on", "2025-06-01", *argv])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    docs = {
        "valid.xml": antwoord(afzender="0363", ontvanger="87654321"),
        "invalid.xml": antwoord(verzoek_antwoord="7"),
        "hostile.xml": b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        "notxml.xml": b"\x00\x01 binary",
    }
    for name, data in docs.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in docs}


def test_all_valid_exits_0(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code, lines = run(capsys, str(files["valid.xml"]))
    assert code == 0
    assert lines == [{
        "file": str(files["valid.xml"]), "valid": True, "standard": "iWmo", "release": "3.2",
        "message": "WMO319", "berichtcode": "482", "afzender": "0363", "ontvanger": "87654321", "errors": [],
    }]


def test_any_invalid_exits_1(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    names = ("valid.xml", "invalid.xml", "hostile.xml", "notxml.xml")
    code, lines = run(capsys, *(str(files[n]) for n in names))
    assert code == 1
    assert [line["valid"] for line in lines] == [True, False, False, False]
    assert [line.get("code") for line in lines] == [None, "schema_invalid", "hostile_xml", "not_well_formed"]
    invalid = lines[1]
    assert invalid["message"] == "WMO319" and invalid["berichtcode"] == "482"
    assert invalid["errors"] == [{
        "line": 20, "path": "/Bericht/Antwoord/VerzoekAntwoord",
        "reason": "value is not one of the allowed values: 1, 2",
    }]


def test_missing_file_prints_a_line_and_exits_2(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path,
) -> None:
    missing = tmp_path / "missing.xml"
    code, lines = run(capsys, str(files["invalid.xml"]), str(missing))
    assert code == 2
    assert lines[1]["file"] == str(missing) and lines[1]["valid"] is False
    assert lines[1]["code"] == "unreadable"


def test_a_file_over_the_limit_is_refused_by_its_size_without_reading_it(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path,
) -> None:
    big = tmp_path / "big.xml"
    with big.open("wb") as f:  # sparse: 40 MB that cost no disk and would cost memory if read
        f.truncate(40 * 2**20)
    code, lines = run(capsys, str(files["valid.xml"]), str(big))
    assert code == 1
    assert lines[1]["valid"] is False and lines[1]["code"] == "too_large"
    assert str(40 * 2**20) in json.dumps(lines[1]["errors"])


def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path,
) -> None:
    assert main(["validate"]) == 2
    assert main(["validate", "--on", "2025-13-01", str(files["valid.xml"])]) == 2
    assert main(["validate", "--releases", str(tmp_path / "none.toml"), str(files["valid.xml"])]) == 2
    assert "cannot read releases file" in capsys.readouterr().err


def test_release_window_via_on(capsys: pytest.CaptureFixture[str], files: dict[str, Path]) -> None:
    code = main(["validate", "--releases", str(RELEASES), "--on", "2000-01-01", str(files["valid.xml"])])
    line = json.loads(capsys.readouterr().out)
    assert code == 1 and line["code"] == "release_not_accepted"


def test_releases_from_environment(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HUB_SCHEMA_RELEASES", str(tmp_path / "absent.toml"))
    assert main(["validate", str(files["valid.xml"])]) == 2
    assert "absent.toml" in capsys.readouterr().err
