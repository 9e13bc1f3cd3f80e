"""Per-receiver retry bounds from routing_rules/retry.csv."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

from hub.adapters.routing_files import check_folder, load_rules
from hub.bootstrap import retry_policy_for
from hub.domain.directory import Kanaal
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.retry import RetryPolicy
from hub.settings import PROJECT_ROOT

AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
OTHER = PartyRef(PartyKind.AANBIEDER, "87654321")


def _rules_with(tmp_path: Path, retry_csv: str) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "routing_rules", folder)
    (folder / "retry.csv").write_text("party,max_attempts,max_age_hours\n" + retry_csv)
    return folder


def test_a_receivers_own_bounds_override_the_default(tmp_path: Path) -> None:
    rules = load_rules(_rules_with(tmp_path, "aanbieder:12345678,10,\naanbieder:87654321,,24\n"))
    default = RetryPolicy(max_attempts=150, max_age_seconds=120 * 3600)
    assert retry_policy_for(default, rules, AANBIEDER).max_attempts == 10
    assert retry_policy_for(default, rules, AANBIEDER).max_age_seconds == 120 * 3600
    assert retry_policy_for(default, rules, OTHER).max_age_seconds == 24 * 3600
    assert retry_policy_for(default, rules, PartyRef(PartyKind.GEMEENTE, "0363")) == default


def test_bad_retry_rows_are_reported_with_file_and_line(tmp_path: Path) -> None:
    folder = _rules_with(
        tmp_path,
        "aanbieder:12345678,ten,\n"  # line 2
        "aanbieder:87654321,,\n"  # line 3
        "gemeente:9999,5,\n"  # line 4: not in the directory
        "aanbieder:87654321,0,\n"  # line 5
        "gemeente:0363,3,\ngemeente:0363,4,\n",  # line 7: twice
    )
    rules, errors = check_folder(folder)
    assert rules is None
    found = {(e.line, e.message.split(" ")[0]) for e in errors if e.file.endswith("retry.csv")}
    assert {line for line, _ in found} == {2, 3, 4, 5, 7}


def test_the_repositorys_retry_file_loads() -> None:
    rules = load_rules(PROJECT_ROOT / "routing_rules")
    override = rules.retry_override(AANBIEDER)
    assert override is not None and override.max_age_hours == 72


def test_an_aanbieder_registered_at_run_time_can_have_a_push_channel_and_its_own_bounds(
    tmp_path: Path,
) -> None:
    folder = _rules_with(tmp_path, "aanbieder:55555555,12,\n")
    with (folder / "channels.csv").open("a") as f:
        f.write("aanbieder:55555555,push,https://later.example/inbox,,\n")
    rules = load_rules(folder)
    registered = PartyRef(PartyKind.AANBIEDER, "55555555")
    assert rules.party(registered, date(2026, 1, 5)) is None  # not in the files: in the database
    bestemming = rules.delivery(registered, date(2026, 1, 5))
    assert bestemming.kanaal is Kanaal.PUSH and bestemming.endpoint == "https://later.example/inbox"
    assert retry_policy_for(RetryPolicy(), rules, registered).max_attempts == 12
