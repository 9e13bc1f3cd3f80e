from __future__ import annotations

from datetime import date

import pytest

from hub.domain.werkdagen import add_werkdagen, easter, feestdagen, is_werkdag


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2024, date(2024, 3, 31)),
        (2025, date(2025, 4, 20)),
        (2026, date(2026, 4, 5)),
        (2027, date(2027, 3, 28)),
    ],
)
def test_easter(year: int, expected: date) -> None:
    assert easter(year) == expected


def test_holidays_of_2026() -> None:
    assert {
        date(2026, 1, 1),
        date(2026, 4, 3),
        date(2026, 4, 5),
        date(2026, 4, 6),
        date(2026, 4, 27),
        date(2026, 5, 5),
        date(2026, 5, 14),
        date(2026, 5, 24),
        date(2026, 5, 25),
        date(2026, 12, 25),
        date(2026, 12, 26),
    } == feestdagen(2026)


def test_koningsdag_moves_to_saturday_when_the_27th_is_a_sunday() -> None:
    assert date(2025, 4, 26) in feestdagen(2025) and date(2025, 4, 27) not in feestdagen(2025)


def test_adding_working_days_skips_weekends_and_holidays() -> None:
    assert add_werkdagen(date(2026, 3, 2), 3) == date(2026, 3, 5)  # Monday -> Thursday
    assert add_werkdagen(date(2026, 3, 5), 3) == date(2026, 3, 10)  # Thursday -> Tuesday
    assert add_werkdagen(date(2026, 12, 23), 3) == date(2026, 12, 29)  # Wed; Thu, (Christmas), Mon, Tue
    assert add_werkdagen(date(2026, 4, 2), 1) == date(2026, 4, 7)  # over Goede Vrijdag and Easter
    assert not is_werkdag(date(2026, 5, 14)) and is_werkdag(date(2026, 5, 13))
    assert add_werkdagen(date(2026, 3, 2), 0) == date(2026, 3, 2)


def test_the_day_that_counts_is_the_dutch_calendar_day() -> None:
    from datetime import UTC, datetime

    from hub.domain.vandaag import dag_van

    # 23:30 UTC on New Year's Eve is already 1 January in the Netherlands (winter: UTC+1) ...
    assert dag_van(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == date(2027, 1, 1)
    # ... and in summer (UTC+2) the day starts at 22:00 UTC.
    assert dag_van(datetime(2027, 6, 30, 21, 59, tzinfo=UTC)) == date(2027, 6, 30)
    assert dag_van(datetime(2027, 6, 30, 22, 0, tzinfo=UTC)) == date(2027, 7, 1)
