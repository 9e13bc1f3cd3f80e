"""The routing directory's records: parties, mergers, delivery channels and sends-for rights, each with
the period in which it holds. Pure domain code: no I/O; hub/adapters/routing_files.py reads them from
routing_rules/ and hub/domain/routing.py resolves over them.

Periods are inclusive on both ends and may be open (no start: since always; no end: until further
notice), so a row in a reviewed data file reads like the decision it records: "from 2024-01-01".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Generic, TypeVar

from hub.domain.parties import PartyRef

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Period:
    """From `valid_from` up to and including `valid_until`; None means open on that side."""

    valid_from: date | None = None
    valid_until: date | None = None

    def __post_init__(self) -> None:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError(f"period ends ({self.valid_until}) before it starts ({self.valid_from})")

    @property
    def start(self) -> int:
        """The first day as an ordinal (1 = date.min when open)."""
        return self.valid_from.toordinal() if self.valid_from else date.min.toordinal()

    @property
    def stop(self) -> int:
        """The day after the last as an ordinal (beyond date.max when open)."""
        return self.valid_until.toordinal() + 1 if self.valid_until else date.max.toordinal() + 1

    def contains(self, on: date) -> bool:
        return self.start <= on.toordinal() < self.stop

    def overlaps(self, other: Period) -> bool:
        return self.start < other.stop and other.start < self.stop

    def __str__(self) -> str:
        left = self.valid_from.isoformat() if self.valid_from else "…"
        right = self.valid_until.isoformat() if self.valid_until else "…"
        return f"{left}..{right}"


ALWAYS = Period()


class Kanaal(StrEnum):
    """How a receiver takes delivery."""

    MAILBOX = "mailbox"  # the receiver fetches from its mailbox (the default)
    PUSH = "push"  # the hub POSTs to the receiver's endpoint
    AMQP = "amqp"  # the receiver consumes its queue directly


@dataclass(frozen=True, slots=True)
class Party:
    """A party in the directory during one period (a party may have several, e.g. re-registered)."""

    ref: PartyRef
    naam: str
    period: Period = ALWAYS
    provincie: str | None = None  # gemeenten only


@dataclass(frozen=True, slots=True)
class Merger:
    """From `effective` on, messages addressed to gemeente `code` go to gemeente `into`."""

    code: str
    into: str
    effective: date


@dataclass(frozen=True, slots=True)
class ChannelRule:
    party: PartyRef
    kanaal: Kanaal
    endpoint: str | None
    period: Period = ALWAYS


@dataclass(frozen=True, slots=True)
class RetryOverride:
    """A receiver's own bounds on push retries (None: the hub's default)."""

    party: PartyRef
    max_attempts: int | None = None
    max_age_hours: float | None = None


@dataclass(frozen=True, slots=True)
class SendsFor:
    """`sender` may put `on_behalf_of`'s code in the Afzender of a message during `period`."""

    sender: PartyRef
    on_behalf_of: PartyRef
    period: Period = ALWAYS


class Timeline(Generic[T]):
    """A value per day, stored as sorted segment starts (ordinals): one bisect per look-up.

    Every segment runs to the next start; None is a gap. Built once per rules load, so look-ups
    stay flat however many parties the directory holds.
    """

    __slots__ = ("_starts", "_values")

    def __init__(self, segments: Iterable[tuple[int, T | None]]) -> None:
        starts: list[int] = []
        values: list[T | None] = []
        for start, value in sorted(segments, key=lambda s: s[0]):
            if values and values[-1] == value:
                continue  # same value as the segment before: extend it
            starts.append(start)
            values.append(value)
        self._starts = tuple(starts)
        self._values = tuple(values)

    @classmethod
    def of_periods(cls, items: Iterable[tuple[Period, T]]) -> Timeline[T]:
        """From non-overlapping periods; raises ValueError when two overlap."""
        ordered = sorted(items, key=lambda i: i[0].start)
        segments: list[tuple[int, T | None]] = []
        stop = date.min.toordinal()
        for period, value in ordered:
            if period.start < stop:
                raise ValueError(f"period {period} overlaps an earlier one")
            if period.start > stop:
                segments.append((stop, None))
            segments.append((period.start, value))
            stop = period.stop
        segments.append((stop, None))
        return cls(segments)

    def at(self, ordinal: int) -> T | None:
        i = bisect_right(self._starts, ordinal) - 1
        return self._values[i] if i >= 0 else None

    def boundaries(self) -> tuple[int, ...]:
        return self._starts


ADMIN = "admin"  # certificates.csv: the operator's certificate (the admin role, no party)


@dataclass(frozen=True, slots=True)
class CertificateRule:
    """A client certificate that identifies `party` (None: the operator) during `period`.

    Matched by the OIN in the certificate subject's serialNumber (PKIoverheid), or by the SHA-256
    fingerprint of the whole certificate (test set-ups, or to pin one certificate).
    """

    party: PartyRef | None
    oin: str | None
    fingerprint: str | None  # 64 lower-case hex digits
    period: Period = ALWAYS


@dataclass(frozen=True, slots=True)
class LimitOverride:
    """A party's own request limits, where the hub's defaults do not suit it (None: the default)."""

    party: PartyRef
    rate_per_second: float | None = None
    burst: int | None = None
    max_concurrent: int | None = None
