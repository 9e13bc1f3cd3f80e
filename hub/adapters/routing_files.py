"""Read routing_rules/ into RoutingRules, report every mistake with file and line, and hot-reload.

The folder holds these CSV files (docs/routing.md): gemeenten.csv, parties.csv, mergers.csv,
channels.csv, sends_for.csv, retry.csv, and (docs/security.md) certificates.csv and limits.csv.
CSV, one record a line, so a reviewer reads a change as a diff of
rows and every error can name its line; '#' starts a comment line. All rows are checked before
anything is built, so one run reports every error rather than the first.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

from hub.domain.directory import (
    ADMIN,
    CertificateRule,
    ChannelRule,
    Kanaal,
    LimitOverride,
    Merger,
    Party,
    Period,
    RetryOverride,
    SendsFor,
)
from hub.domain.parties import FIXED_PARTY_CODES, PartyKind, PartyRef, code_is_valid_for, is_gemeentecode
from hub.domain.routing import RoutingRules

GEMEENTEN = "gemeenten.csv"
PARTIES = "parties.csv"
MERGERS = "mergers.csv"
CHANNELS = "channels.csv"
SENDS_FOR = "sends_for.csv"
RETRY = "retry.csv"
CERTIFICATES = "certificates.csv"
LIMITS = "limits.csv"

_COLUMNS: dict[str, tuple[str, ...]] = {
    GEMEENTEN: ("code", "naam", "provincie", "valid_from", "valid_until"),
    PARTIES: ("kind", "code", "naam", "valid_from", "valid_until"),
    MERGERS: ("code", "into", "effective"),
    CHANNELS: ("party", "kanaal", "endpoint", "valid_from", "valid_until"),
    SENDS_FOR: ("sender", "for", "valid_from", "valid_until"),
    RETRY: ("party", "max_attempts", "max_age_hours"),
    CERTIFICATES: ("party", "oin", "fingerprint", "valid_from", "valid_until"),
    LIMITS: ("party", "rate_per_second", "burst", "max_concurrent"),
}
_OIN = re.compile(r"[0-9]{20}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
K = TypeVar("K")

_REQUIRED = (GEMEENTEN, PARTIES)  # the others may be absent: no mergers, all mailbox, no sends_for


@dataclass(frozen=True, slots=True)
class RulesError:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RulesInvalid(Exception):
    """The folder does not make valid rules; `errors` says where and why."""

    def __init__(self, errors: tuple[RulesError, ...]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class _Row:
    file: str
    line: int
    values: dict[str, str]


@dataclass(frozen=True, slots=True)
class _At:
    """Where a record came from: what an error about it points to."""

    file: str
    line: int


@dataclass
class _Loader:
    folder: Path
    errors: list[RulesError] = field(default_factory=list)
    parties: list[tuple[_At, Party]] = field(default_factory=list)
    mergers: list[tuple[_At, Merger]] = field(default_factory=list)
    channels: list[tuple[_At, ChannelRule]] = field(default_factory=list)
    sends_for: list[tuple[_At, SendsFor]] = field(default_factory=list)
    retry: list[tuple[_At, RetryOverride]] = field(default_factory=list)
    certificates: list[tuple[_At, CertificateRule]] = field(default_factory=list)
    limits: list[tuple[_At, LimitOverride]] = field(default_factory=list)

    def error(self, where: _Row | _At, message: str) -> None:
        self.errors.append(RulesError(where.file, where.line, message))

    # -- reading ----------------------------------------------------------------------------------

    def rows(self, name: str) -> Iterator[_Row]:
        path = self.folder / name
        if not path.exists():
            if name in _REQUIRED:
                self.errors.append(RulesError(str(path), 0, "required file is missing"))
            return
        columns = _COLUMNS[name]
        header_seen = False
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            where = _Row(str(path), number, {})
            cells = [c.strip() for c in next(csv.reader([text]))]
            if not header_seen:
                header_seen = True
                if tuple(cells) != columns:
                    self.error(where, f"header must be {','.join(columns)}")
                    return
                continue
            if len(cells) != len(columns):
                self.error(where, f"{len(cells)} columns, expected {len(columns)} ({','.join(columns)})")
                continue
            yield _Row(str(path), number, dict(zip(columns, cells, strict=True)))

    def date(self, row: _Row, column: str, *, required: bool = False) -> date | None:
        text = row.values[column]
        if not text:
            if required:
                self.error(row, f"{column} is required")
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.error(row, f"{column} {text!r} is not a date (YYYY-MM-DD)")
            return None

    def period(self, row: _Row) -> Period | None:
        start, end = self.date(row, "valid_from"), self.date(row, "valid_until")
        if start and end and end < start:
            self.error(row, f"valid_until {end} is before valid_from {start}")
            return None
        return Period(start, end)

    def ref(self, row: _Row, column: str) -> PartyRef | None:
        text = row.values[column]
        try:
            return PartyRef.parse(text)
        except ValueError:
            self.error(row, f"{column} {text!r} is not kind:code (e.g. gemeente:0363, aanbieder:12345678)")
            return None

    # -- the files --------------------------------------------------------------------------------

    def read_gemeenten(self) -> None:
        for row in self.rows(GEMEENTEN):
            code, naam = row.values["code"], row.values["naam"]
            period = self.period(row)
            if not is_gemeentecode(code):
                self.error(row, f"gemeentecode {code!r} is not 4 digits")
            elif not naam:
                self.error(row, "naam is empty")
            elif period is not None:
                ref = PartyRef(PartyKind.GEMEENTE, code)
                party = Party(ref, naam, period, row.values["provincie"] or None)
                self.parties.append((_At(row.file, row.line), party))

    def read_parties(self) -> None:
        for row in self.rows(PARTIES):
            kind_text, code, naam = row.values["kind"], row.values["code"], row.values["naam"]
            period = self.period(row)
            try:
                kind = PartyKind(kind_text)
            except ValueError:
                self.error(row, f"unknown kind {kind_text!r}")
                continue
            if kind is PartyKind.GEMEENTE:
                self.error(row, f"gemeenten belong in {GEMEENTEN}")
            elif not code_is_valid_for(kind, code):
                self.error(row, f"{code!r} is not a valid code for a {kind}")
            elif not naam:
                self.error(row, "naam is empty")
            elif period is not None:
                self.parties.append((_At(row.file, row.line), Party(PartyRef(kind, code), naam, period)))

    def read_mergers(self) -> None:
        for row in self.rows(MERGERS):
            code, into = row.values["code"], row.values["into"]
            effective = self.date(row, "effective", required=True)
            bad = [c for c in (code, into) if not is_gemeentecode(c)]
            if bad:
                self.error(row, f"gemeentecode {bad[0]!r} is not 4 digits")
            elif code == into:
                self.error(row, f"gemeente {code} merges into itself")
            elif effective is not None:
                self.mergers.append((_At(row.file, row.line), Merger(code, into, effective)))

    def read_channels(self) -> None:
        for row in self.rows(CHANNELS):
            ref, period = self.ref(row, "party"), self.period(row)
            kanaal_text, endpoint = row.values["kanaal"], row.values["endpoint"]
            try:
                kanaal = Kanaal(kanaal_text)
            except ValueError:
                self.error(row, f"kanaal {kanaal_text!r} is not one of {', '.join(k.value for k in Kanaal)}")
                continue
            if kanaal is Kanaal.PUSH and not endpoint.startswith(("https://", "http://")):
                self.error(row, "kanaal push needs an http(s) endpoint")
            elif kanaal is not Kanaal.PUSH and endpoint:
                self.error(row, f"kanaal {kanaal} takes no endpoint")
            elif ref is not None and period is not None:
                rule = ChannelRule(ref, kanaal, endpoint or None, period)
                self.channels.append((_At(row.file, row.line), rule))

    def read_sends_for(self) -> None:
        for row in self.rows(SENDS_FOR):
            sender, on_behalf_of, period = self.ref(row, "sender"), self.ref(row, "for"), self.period(row)
            if sender is not None and sender == on_behalf_of:
                self.error(row, "a party always sends for itself: no row needed")
            elif sender is not None and on_behalf_of is not None and period is not None:
                self.sends_for.append((_At(row.file, row.line), SendsFor(sender, on_behalf_of, period)))

    def read_retry(self) -> None:
        for row in self.rows(RETRY):
            ref = self.ref(row, "party")
            attempts_text, hours_text = row.values["max_attempts"], row.values["max_age_hours"]
            try:
                attempts = int(attempts_text) if attempts_text else None
                hours = float(hours_text) if hours_text else None
            except ValueError:
                self.error(row, "max_attempts must be a whole number and max_age_hours a number")
                continue
            if (attempts is not None and attempts < 1) or (hours is not None and hours <= 0):
                self.error(row, "max_attempts and max_age_hours must be positive")
            elif attempts is None and hours is None:
                self.error(row, "a row needs max_attempts, max_age_hours or both")
            elif ref is not None:
                self.retry.append((_At(row.file, row.line), RetryOverride(ref, attempts, hours)))

    def read_certificates(self) -> None:
        for row in self.rows(CERTIFICATES):
            party_text, oin = row.values["party"], row.values["oin"]
            fingerprint = row.values["fingerprint"].replace(":", "").lower()
            period = self.period(row)
            ref = None if party_text == ADMIN else self.ref(row, "party")
            if party_text != ADMIN and ref is None:
                continue
            if not oin and not fingerprint:
                self.error(row, "a row needs an oin, a fingerprint or both")
            elif oin and not _OIN.fullmatch(oin):
                self.error(row, f"oin {oin!r} is not 20 digits")
            elif fingerprint and not _FINGERPRINT.fullmatch(fingerprint):
                self.error(row, "fingerprint is not a SHA-256 (64 hex digits, colons allowed)")
            elif period is not None:
                rule = CertificateRule(ref, oin or None, fingerprint or None, period)
                self.certificates.append((_At(row.file, row.line), rule))

    def read_limits(self) -> None:
        for row in self.rows(LIMITS):
            ref = self.ref(row, "party")
            rate_text, burst_text, conc_text = (
                row.values["rate_per_second"],
                row.values["burst"],
                row.values["max_concurrent"],
            )
            try:
                rate = float(rate_text) if rate_text else None
                burst = int(burst_text) if burst_text else None
                concurrent = int(conc_text) if conc_text else None
            except ValueError:
                self.error(row, "rate_per_second must be a number, burst and max_concurrent whole numbers")
                continue
            if any(v is not None and v <= 0 for v in (rate, burst, concurrent)):
                self.error(row, "rate_per_second, burst and max_concurrent must be positive")
            elif rate is None and burst is None and concurrent is None:
                self.error(row, "a row needs rate_per_second, burst or max_concurrent")
            elif ref is not None:
                self.limits.append((_At(row.file, row.line), LimitOverride(ref, rate, burst, concurrent)))

    # -- checks across rows -----------------------------------------------------------------------

    def check(self) -> None:
        directory: dict[PartyRef, list[tuple[_At, Period]]] = {}
        for at, party in self.parties:
            directory.setdefault(party.ref, []).append((at, party.period))
        _overlaps(self, directory, "party")

        def known(ref: PartyRef, at: _At, what: str) -> None:
            if ref not in directory:
                self.error(at, f"{what} {ref} is not in {GEMEENTEN} or {PARTIES}")

        def known_or_registered(ref: PartyRef, at: _At, what: str) -> None:
            # Aanbieders are mostly registered at run time (`hub parties add`), not in the files: their
            # channel, retry and certificate rows may name them all the same.
            if ref.kind is not PartyKind.AANBIEDER:
                known(ref, at, what)

        seen_merger: dict[str, _At] = {}
        for at, m in self.mergers:
            if m.code in seen_merger:
                self.error(at, f"gemeente {m.code} already merges (line {seen_merger[m.code].line})")
                continue
            seen_merger[m.code] = at
            if _gemeente(m.code) not in directory:
                self.error(at, f"merged gemeente {m.code} is not in {GEMEENTEN} (keep it with valid_until)")
            if not any(p.contains(m.effective) for _, p in directory.get(_gemeente(m.into), [])):
                self.error(at, f"merger target {m.into} is not a gemeente in force on {m.effective}")
            for _, p in directory.get(_gemeente(m.code), []):
                if p.stop > m.effective.toordinal():
                    self.error(at, f"gemeente {m.code} is still in force on its merger date {m.effective}")

        channels: dict[PartyRef, list[tuple[_At, Period]]] = {}
        for at, c in self.channels:
            known_or_registered(c.party, at, "party")
            channels.setdefault(c.party, []).append((at, c.period))
        _overlaps(self, channels, "channel for")

        sends_for: dict[tuple[PartyRef, PartyRef], list[tuple[_At, Period]]] = {}
        for at, s in self.sends_for:
            known(s.sender, at, "sender")
            known(s.on_behalf_of, at, "party")
            sends_for.setdefault((s.sender, s.on_behalf_of), []).append((at, s.period))
        _overlaps(self, sends_for, "sends_for")

        retry_rows: dict[PartyRef, _At] = {}
        for at, r in self.retry:
            known_or_registered(r.party, at, "party")
            if r.party in retry_rows:
                self.error(at, f"retry for {r.party} is set already (line {retry_rows[r.party].line})")
            retry_rows[r.party] = at

        by_oin: dict[str, list[tuple[_At, Period]]] = {}
        by_fingerprint: dict[str, list[tuple[_At, Period]]] = {}
        for at, cert in self.certificates:
            if cert.party is not None:
                known_or_registered(cert.party, at, "party")
            if cert.oin:
                by_oin.setdefault(cert.oin, []).append((at, cert.period))
            if cert.fingerprint:
                by_fingerprint.setdefault(cert.fingerprint, []).append((at, cert.period))
        _overlaps(self, by_oin, "certificate with oin")
        _overlaps(self, by_fingerprint, "certificate with fingerprint")

        limit_rows: dict[PartyRef, _At] = {}
        for at, lim in self.limits:
            if lim.party.kind is not PartyKind.AANBIEDER:
                known(lim.party, at, "party")
            if lim.party in limit_rows:
                self.error(at, f"limits for {lim.party} are set already (line {limit_rows[lim.party].line})")
            limit_rows[lim.party] = at

        for kind, code in FIXED_PARTY_CODES.items():
            if PartyRef(kind, code) not in directory:
                where = _At(str(self.folder / PARTIES), 0)  # line 0: the file as a whole
                self.error(where, f"fixed party {code} is missing")

    def version(self) -> str:
        digest = hashlib.sha256()
        for name in sorted(_COLUMNS):
            path = self.folder / name
            if path.exists():
                digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]


def _gemeente(code: str) -> PartyRef:
    return PartyRef(PartyKind.GEMEENTE, code)


def _overlaps(loader: _Loader, groups: dict[K, list[tuple[_At, Period]]], what: str) -> None:
    """Report each row whose period overlaps an earlier-starting one of the same key (duplicates too)."""
    for key, items in groups.items():
        items.sort(key=lambda i: i[1].start)
        reach: tuple[_At, Period] | None = None  # the row seen so far that ends last
        for at, period in items:
            if reach is not None and reach[1].overlaps(period):
                label = f"{key[0]} -> {key[1]}" if isinstance(key, tuple) else str(key)
                earlier = f"line {reach[0].line} ({reach[1]})"
                loader.error(at, f"{what} {label}: period {period} overlaps {earlier}")
            if reach is None or period.stop > reach[1].stop:
                reach = (at, period)


def check_folder(folder: Path) -> tuple[RoutingRules | None, tuple[RulesError, ...]]:
    """The rules in `folder`, or None with every error found."""
    loader = _Loader(folder)
    if not folder.is_dir():
        return None, (RulesError(str(folder), 0, "not a folder"),)
    for path in sorted(folder.glob("*.csv")):
        if path.name not in _COLUMNS:
            loader.errors.append(RulesError(str(path), 0, f"unknown file (expected {', '.join(_COLUMNS)})"))
    loader.read_gemeenten()
    loader.read_parties()
    loader.read_mergers()
    loader.read_channels()
    loader.read_sends_for()
    loader.read_retry()
    loader.read_certificates()
    loader.read_limits()
    loader.check()
    if loader.errors:
        return None, tuple(loader.errors)
    try:
        rules = RoutingRules(
            loader.version(),
            (p for _, p in loader.parties),
            (m for _, m in loader.mergers),
            (c for _, c in loader.channels),
            (s for _, s in loader.sends_for),
            (r for _, r in loader.retry),
            (c for _, c in loader.certificates),
            (lim for _, lim in loader.limits),
        )
    except ValueError as exc:  # what the row checks above should already have caught
        return None, (RulesError(str(folder), 0, str(exc)),)
    return rules, ()


def load_rules(folder: Path) -> RoutingRules:
    """The rules in `folder`; raises RulesInvalid with every error found."""
    rules, errors = check_folder(folder)
    if rules is None:
        raise RulesInvalid(errors)
    return rules


# -- hot reload ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    version: str  # the version in force after the reload (the old one when refused)
    previous_version: str
    errors: tuple[RulesError, ...] = ()


class RulesHolder:
    """Holds the rules in force. A request reads `current` once and keeps that object to the end,
    so a reload never changes the rules under a request that is already routing."""

    def __init__(self, folder: Path, rules: RoutingRules | None = None) -> None:
        self.folder = folder
        self._current = rules if rules is not None else load_rules(folder)
        self._lock = threading.Lock()  # one reload at a time; readers never wait

    @classmethod
    def load(cls, folder: Path) -> RulesHolder:
        """Load the folder at start-up; raises RulesInvalid (the hub must not start without rules)."""
        return cls(folder, load_rules(folder))

    @property
    def current(self) -> RoutingRules:
        return self._current

    def reload(self) -> ReloadResult:
        """Parse the folder anew; swap only when it is valid, else keep the old rules."""
        with self._lock:
            previous = self._current.version
            rules, errors = check_folder(self.folder)
            if rules is None:
                return ReloadResult(False, previous, previous, errors)
            self._current = rules  # one reference assignment: atomic for readers
            return ReloadResult(True, rules.version, previous)


def install_sighup_reload(
    loop: asyncio.AbstractEventLoop,
    holder: RulesHolder,
    on_result: Callable[[ReloadResult], None] | None = None,
) -> None:
    """Reload the rules on SIGHUP. Parsing runs in a worker thread so the loop keeps serving;
    `on_result` (log it, count it) is called on the loop when the reload is done."""
    pending: set[asyncio.Future[ReloadResult]] = set()

    def done(future: asyncio.Future[ReloadResult]) -> None:
        pending.discard(future)
        if on_result is not None and not future.cancelled() and future.exception() is None:
            on_result(future.result())

    def handler() -> None:
        future = loop.run_in_executor(None, holder.reload)
        pending.add(future)  # keep a reference until done
        future.add_done_callback(done)

    loop.add_signal_handler(signal.SIGHUP, handler)
