"""The day that counts: the calendar day in the Netherlands, whatever the host's time zone.

Acceptance windows, mergers, channel switches and answer deadlines take effect at midnight Dutch
time; a host on UTC would otherwise switch at 01:00 or 02:00.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

NEDERLAND = ZoneInfo("Europe/Amsterdam")


def vandaag() -> date:
    return datetime.now(NEDERLAND).date()


def dag_van(moment: datetime) -> date:
    """The Dutch calendar day of an aware moment."""
    return moment.astimezone(NEDERLAND).date()
