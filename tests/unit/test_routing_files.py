"""routing_rules/ on disk: the real folder loads, every broken row is reported by file and line,
reload swaps only valid rules, and `hub routes check` says so."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from datetime import date
from pathlib import Path

import pytest

from hub.adapters.routing_files import (
    ReloadResult,
    RulesHolder,
    RulesInvalid,
    check_folder,
    install_sighup_reload,
    load_rules,
)
from hub.domain.parties import FIXED_PARTY_CODES, PartyKind, PartyRef
from hub.entrypoints import cli

RULES_DIR = Path(__file__).resolve().parents[2] / "routing_rules"
# The shared reference folder sits next to the project (../shared); a fresh clone has none.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "istandaarden" / "reference"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the real rules to break."""
    return Path(shutil.copytree(RULES_DIR, tmp_path / "rules"))


def append(path: Path, line: str) -> int:
    """Append a line; return its line number."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text + line + "\n", encoding="utf-8")
    return text.count("\n") + 1


def test_the_real_folder_loads() -> None:
    rules = load_rules(RULES_DIR)
    assert re.fullmatch(r"[0-9a-f]{16}", rules.version)
    on = date(2026, 1, 1)
    gemeenten = [p for p in rules.parties if p.ref.kind is PartyKind.GEMEENTE and p.period.contains(on)]
    assert len(gemeenten) == 342
    for kind, code in FIXED_PARTY_CODES.items():
        assert rules.party(PartyRef(kind, code), on) is not None
    for demo in ("12345678", "87654321"):
        assert rules.party(PartyRef(PartyKind.AANBIEDER, demo), on) is not None
    # The real merger in the data: Brielle (0501) is part of Voorne aan Zee (1992) from 2024-01-01.
    assert any(
        m.code == "0501" and m.into == "1992" and m.effective == date(2024, 1, 1) for m in rules.mergers
    )


def test_version_is_a_content_hash(folder: Path) -> None:
    assert load_rules(folder).version == load_rules(RULES_DIR).version
    append(folder / "parties.csv", "aanbieder,55555555,Nieuw,,")
    assert load_rules(folder).version != load_rules(RULES_DIR).version


def test_hub_routes_check_passes_on_the_real_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HUB_ROUTING_RULES", raising=False)
    assert cli.main(["routes", "check"]) == 0
    out = capsys.readouterr().out
    assert load_rules(RULES_DIR).version in out and "gemeenten" in out
    assert len(out.strip().splitlines()) == 1


def test_hub_routes_check_reads_the_environment(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = append(folder / "gemeenten.csv", "123,Nergens,Utrecht,,")
    monkeypatch.setenv("HUB_ROUTING_RULES", str(folder))
    assert cli.main(["routes", "check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{folder / 'gemeenten.csv'}:{line}: gemeentecode '123' is not 4 digits"]


def test_hub_routes_check_lists_every_error(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = append(folder / "gemeenten.csv", "12345,Nergens,Utrecht,,")
    second = append(folder / "channels.csv", "aanbieder:87654321,push,,,")
    assert cli.main(["routes", "check", "--rules", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"gemeenten.csv:{first}: " in err and f"channels.csv:{second}: " in err


def test_hub_routes_resolve(capsys: pytest.CaptureFixture[str]) -> None:
    rules = ["--rules", str(RULES_DIR)]
    assert cli.main(["routes", "resolve", *rules, "JW315", "12345678", "0501", "--on", "2024-01-01"]) == 0
    assert "gemeente:1992 via mailbox" in capsys.readouterr().out
    assert cli.main(["routes", "resolve", *rules, "WMO405", "0363", "0599"]) == 1
    assert "route_not_allowed" in capsys.readouterr().out


# (file, line appended, fragment of the message); the error must name that file and that line.
BROKEN_ROWS = [
    ("gemeenten.csv", "123,Nergens,Utrecht,,", "not 4 digits"),
    ("gemeenten.csv", "0363,Amsterdam,Noord-Holland,,", "overlaps line"),
    ("gemeenten.csv", "0001,,Utrecht,,", "naam is empty"),
    ("gemeenten.csv", "0001,Ergens,Utrecht,2020-02-30,", "is not a date"),
    ("gemeenten.csv", "0001,Ergens,Utrecht,2021-01-01,2020-01-01", "before valid_from"),
    ("gemeenten.csv", "0001,Ergens", "2 columns, expected 5"),
    ("parties.csv", "aanbieder,1234567,Kort,,", "not a valid code for a aanbieder"),
    ("parties.csv", "zorgkantoor,ZK,Zorgkantoor,,", "unknown kind"),
    ("parties.csv", "gemeente,0001,Ergens,,", "belong in gemeenten.csv"),
    ("parties.csv", "aanbieder,12345678,Demo Zorg B.V. (demo),,", "overlaps line"),
    ("parties.csv", "cak,CIZ,CAK,,", "not a valid code for a cak"),
    ("mergers.csv", "0599,9998,2030-01-01", "merger target 9998 is not a gemeente in force"),
    ("mergers.csv", "0599,0363,2030-01-01", "still in force on its merger date"),
    ("mergers.csv", "0501,0599,2025-01-01", "already merges"),
    ("mergers.csv", "9997,0363,2030-01-01", "merged gemeente 9997 is not in gemeenten.csv"),
    ("mergers.csv", "0599,0599,2030-01-01", "merges into itself"),
    ("mergers.csv", "0599,0363,", "effective is required"),
    (
        "channels.csv",
        "gemeente:9999,mailbox,,,",
        "gemeente:9999 is not in gemeenten.csv or parties.csv",
    ),
    ("channels.csv", "cak:CAK,mailbox,,2020-01-01,", "channel for cak:CAK: period 2020-01-01"),
    ("channels.csv", "aanbieder:87654321,push,,,", "push needs an http(s) endpoint"),
    ("channels.csv", "aanbieder:87654321,push,ftp://x.example/in,,", "push needs an http(s) endpoint"),
    ("channels.csv", "aanbieder:87654321,mailbox,https://x.example/in,,", "takes no endpoint"),
    ("channels.csv", "aanbieder:87654321,fax,,,", "kanaal 'fax' is not one of"),
    ("channels.csv", "87654321,mailbox,,,", "is not kind:code"),
    ("sends_for.csv", "aanbieder:11223344,aanbieder:12345678,2026-01-01,", "overlaps line"),
    ("sends_for.csv", "aanbieder:11223344,aanbieder:11223344,,", "sends for itself"),
    ("sends_for.csv", "aanbieder:99999999,aanbieder:12345678,,", "sender aanbieder:99999999 is not in"),
]


@pytest.mark.parametrize(("name", "row", "fragment"), BROKEN_ROWS)
def test_each_broken_row_is_reported_with_file_and_line(
    folder: Path, name: str, row: str, fragment: str
) -> None:
    line = append(folder / name, row)
    rules, errors = check_folder(folder)
    assert rules is None
    where = f"{folder / name}:{line}: "
    assert any(str(e).startswith(where) and fragment in str(e) for e in errors), [str(e) for e in errors]


@pytest.mark.parametrize(
    ("name", "old", "new", "fragment"),
    [
        (
            "parties.csv",
            "ciz,CIZ,CIZ (Centrum indicatiestelling zorg),,\n",
            "",
            ":0: fixed party CIZ is missing",
        ),
        (
            "mergers.csv",
            "code,into,effective",
            "code,naar,effective",
            ":{line}: header must be code,into,effective",
        ),
    ],
)
def test_file_level_errors(folder: Path, name: str, old: str, new: str, fragment: str) -> None:
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    line = text[: text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new), encoding="utf-8")
    _, errors = check_folder(folder)
    expected = f"{path}{fragment.format(line=line)}"
    assert any(str(e) == expected for e in errors), [str(e) for e in errors]


def test_missing_and_unknown_files(folder: Path) -> None:
    (folder / "gemeenten.csv").unlink()
    (folder / "chanels.csv").write_text("typo\n", encoding="utf-8")
    _, errors = check_folder(folder)
    messages = {str(e) for e in errors}
    assert f"{folder / 'gemeenten.csv'}:0: required file is missing" in messages
    assert any(m.startswith(f"{folder / 'chanels.csv'}:0: unknown file") for m in messages)
    with pytest.raises(RulesInvalid):
        load_rules(folder)


def test_optional_files_may_be_absent(folder: Path) -> None:
    for name in ("mergers.csv", "channels.csv", "sends_for.csv"):
        (folder / name).unlink()
    rules = load_rules(folder)
    assert rules.mergers == () and rules.channels == () and rules.sends_for == ()


def test_reload_keeps_the_old_rules_on_a_broken_file_and_swaps_on_a_good_one(folder: Path) -> None:
    holder = RulesHolder.load(folder)
    in_flight = holder.current
    line = append(folder / "parties.csv", "aanbieder,5555,Kapot,,")

    refused = holder.reload()
    assert not refused.ok
    assert refused.version == refused.previous_version == in_flight.version
    assert [str(e) for e in refused.errors] == [
        f"{folder / 'parties.csv'}:{line}: '5555' is not a valid code for a aanbieder"
    ]
    assert holder.current is in_flight

    path = folder / "parties.csv"
    path.write_text(
        path.read_text(encoding="utf-8").replace("aanbieder,5555,", "aanbieder,55555555,"), "utf-8"
    )
    swapped = holder.reload()
    assert swapped.ok and swapped.errors == ()
    assert swapped.previous_version == in_flight.version != swapped.version == holder.current.version
    new = PartyRef(PartyKind.AANBIEDER, "55555555")
    assert holder.current.party(new, date(2026, 1, 1)) is not None
    assert in_flight.party(new, date(2026, 1, 1)) is None  # a request that started before keeps its rules


async def test_sighup_reloads_off_the_loop(folder: Path) -> None:
    loop = asyncio.get_running_loop()
    holder = RulesHolder.load(folder)
    before = holder.current.version
    append(folder / "parties.csv", "aanbieder,55555555,Nieuw,,")
    results: asyncio.Queue[ReloadResult] = asyncio.Queue()
    install_sighup_reload(loop, holder, results.put_nowait)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        result = await asyncio.wait_for(results.get(), timeout=10)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
    assert result.ok and result.previous_version == before
    assert holder.current.version == result.version != before


def _reference_rows(path: Path) -> set[tuple[str, str, str]]:
    rows = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"[0-9]{4}", cells[0]):
            rows.add((cells[0], cells[1], cells[2]))
    return rows


@pytest.mark.parametrize("standaard", ["jw", "wmo"])
def test_gemeenten_agree_with_the_cbs_reference_list(standaard: str) -> None:
    reference = REFERENCE / standaard / "codelijsten" / "CBS_Gemeentecodes.md"
    if not reference.exists():
        pytest.skip(f"reference list not present: {reference}")
    expected = _reference_rows(reference)
    assert len(expected) == 342
    rules = load_rules(RULES_DIR)
    on = date(2026, 1, 1)
    ours = {
        (p.ref.code, p.naam, p.provincie or "")
        for p in rules.parties
        if p.ref.kind is PartyKind.GEMEENTE and p.period.contains(on)
    }
    assert ours == expected
