"""Working days (werkdagen) for answer deadlines: Monday to Friday, less the Dutch public holidays.

The process descriptions give deadlines in working days (a retour within 3, a 325 within 10).
Holidays counted: Nieuwjaarsdag, Goede Vrijdag, Eerste en Tweede Paasdag, Koningsdag (27 April, or 26
April when the 27th is a Sunday), Bevrijdingsdag (5 May), Hemelvaartsdag, Eerste en Tweede Pinksterdag,
Eerste en Tweede Kerstdag. Goede Vrijdag and Bevrijdingsdag are not a day off for everyone; counting them
errs on the side of the sender (a later deadline), never of calling an answer overdue too early.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache


def easter(year: int) -> date:
    """Easter Sunday (Gregorian), by the anonymous Gregorian algorithm (Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def feestdagen(year: int) -> frozenset[date]:
    pasen = easter(year)
    koningsdag = date(year, 4, 27)
    if koningsdag.weekday() == 6:
        koningsdag = date(year, 4, 26)
    return frozenset(
        {
            date(year, 1, 1),
            pasen - timedelta(days=2),
            pasen,
            pasen + timedelta(days=1),
            koningsdag,
            date(year, 5, 5),
            pasen + timedelta(days=39),  # Hemelvaartsdag
            pasen + timedelta(days=49),
            pasen + timedelta(days=50),
            date(year, 12, 25),
            date(year, 12, 26),
        }
    )


def is_werkdag(day: date) -> bool:
    return day.weekday() < 5 and day not in feestdagen(day.year)


def add_werkdagen(start: date, n: int) -> date:
    """The day `n` working days after `start` (the day of receipt itself does not count)."""
    day = start
    while n > 0:
        day += timedelta(days=1)
        if is_werkdag(day):
            n -= 1
    return day
