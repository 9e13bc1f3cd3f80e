"""Where a message goes: the routing rules and a pure `resolve()`.

Pure domain code (stdlib + hub.domain): the rules arrive as records (hub/domain/directory.py), read
from routing_rules/ by hub/adapters/routing_files.py. Everything date-dependent is precomputed into
one Timeline per code when the rules are built, so `resolve()` is a dict look-up and a bisect however
large the directory grows (bench/routing.py measures it).

A RoutingRules object is immutable: a reload builds a new one, and a request that started with the
old one finishes with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from hub.domain.bericht import Bericht
from hub.domain.catalogue import Rol
from hub.domain.directory import (
    CertificateRule,
    ChannelRule,
    Kanaal,
    LimitOverride,
    Merger,
    Party,
    Period,
    RetryOverride,
    SendsFor,
    Timeline,
)
from hub.domain.errors import ErrorCode, HubError
from hub.domain.parties import FIXED_PARTY_CODES, PartyKind, PartyRef, code_is_valid_for, kind_of_code

__all__ = ["Bestemming", "Kanaal", "Party", "Registered", "RoutingRules"]

K = TypeVar("K")
V = TypeVar("V")

Registered = Callable[[PartyRef], Party | None]
"""Look-up of aanbieders registered at run time (the database), for codes the files don't list."""


@dataclass(frozen=True, slots=True)
class Bestemming:
    """The routing decision: who receives the message (after mergers) and how it is delivered."""

    ontvanger: PartyRef
    kanaal: Kanaal
    endpoint: str | None  # the URL for PUSH; None otherwise
    queue_key: str  # stable per receiver, e.g. "gemeente.0363": the queue name is built from it


def queue_key(ref: PartyRef) -> str:
    return f"{ref.kind.value}.{ref.code}"


@dataclass(frozen=True, slots=True)
class _Route:
    kind: PartyKind
    timeline: Timeline[Bestemming]


class RoutingRules:
    """The directory and routes in force, with the look-ups the intake needs.

    Codes are unique across kinds by their form (4 digits, 8 digits, a fixed name), so every table
    is keyed by the bare code. The constructor checks what a data file could get wrong in a way that
    would make resolution ambiguous (overlapping periods, two mergers for one code, a merger cycle)
    and raises ValueError; hub/adapters/routing_files.py reports those with file and line first.
    """

    def __init__(
        self,
        version: str,
        parties: Iterable[Party],
        mergers: Iterable[Merger] = (),
        channels: Iterable[ChannelRule] = (),
        sends_for: Iterable[SendsFor] = (),
        retry: Iterable[RetryOverride] = (),
        certificates: Iterable[CertificateRule] = (),
        limits: Iterable[LimitOverride] = (),
    ) -> None:
        self.version = version
        self.retry = {r.party: r for r in retry}
        self.limits = {r.party: r for r in limits}
        self.certificates = tuple(certificates)
        self._by_oin = _timelines((c.oin, c.period, c) for c in self.certificates if c.oin)
        self._by_fingerprint = _timelines(
            (c.fingerprint, c.period, c) for c in self.certificates if c.fingerprint
        )
        self.parties = tuple(parties)
        self.mergers = tuple(mergers)
        self.channels = tuple(channels)
        self.sends_for = tuple(sends_for)

        for p in self.parties:
            if not code_is_valid_for(p.ref.kind, p.ref.code):
                raise ValueError(f"{p.ref.code!r} is not a valid code for a {p.ref.kind}")
        self._kinds: dict[str, PartyKind] = {p.ref.code: p.ref.kind for p in self.parties}
        self._parties = _timelines((p.ref.code, p.period, p) for p in self.parties)
        self._channels = _timelines((c.party.code, c.period, c) for c in self.channels)
        self._sends_for = _timelines(
            ((s.sender, s.on_behalf_of.code), s.period, True) for s in self.sends_for
        )
        self._mergers: dict[str, Merger] = {}
        for m in self.mergers:
            if m.code in self._mergers:
                raise ValueError(f"gemeente {m.code} merges twice")
            self._mergers[m.code] = m
        self._routes = {code: self._route(code) for code in self._kinds.keys() | self._mergers.keys()}

    # -- look-ups ---------------------------------------------------------------------------------

    def party(self, ref: PartyRef, on: date) -> Party | None:
        """The party with exactly this ref in the files on that day (mergers not applied)."""
        timeline = self._parties.get(ref.code)
        found = timeline.at(on.toordinal()) if timeline else None
        return found if found is not None and found.ref == ref else None

    def may_send_as(self, authenticated: PartyRef, afzender_code: str, on: date) -> bool:
        """May the authenticated party put `afzender_code` in the header's Afzender on that day?

        Yes for its own code; otherwise only by a sends_for row (a software supplier or regional
        cooperation sending for others). A merger gives no implicit right: the successor of a merged
        gemeente that still sends under an old code needs a sends_for row for the transition.
        """
        if afzender_code == authenticated.code and kind_of_code(afzender_code) is authenticated.kind:
            return True
        timeline = self._sends_for.get((authenticated, afzender_code))
        return timeline is not None and timeline.at(on.toordinal()) is True

    def resolve(
        self,
        bericht: Bericht,
        on: date,
        *,
        answer_to: PartyRef | None = None,
        registered: Registered | None = None,
    ) -> Bestemming:
        """Where `bericht`, received on day `on`, goes. Raises HubError (UNKNOWN_RECEIVER or
        ROUTE_NOT_ALLOWED).

        `answer_to` is the party that sent the heenbericht this retour or 325 answers, when the intake
        found it. It wins over the header: a retour copies the heenbericht's header unchanged (IV028),
        so its Afzender only repeats what the heenbericht's sender wrote, and a sender that got it wrong
        (or forged it) must not steer the answer to another party. The heenbericht the hub itself
        stored is the proof of who asked. `registered` supplies aanbieders registered at run time.
        """
        t = bericht.type
        if answer_to is not None:
            if t.rol is Rol.HEEN:
                raise ValueError(f"answer_to given for a heenbericht ({t.naam})")
            code = answer_to.code
            kind: PartyKind | None = answer_to.kind
        else:
            code = bericht.ontvanger
            kind = self._kinds.get(code) or kind_of_code(code)

        fixed = FIXED_PARTY_CODES.get(t.ontvanger)
        if fixed is not None and code != fixed:
            # iEb goes to CAK, iPgb to the VWS PGB-portaal: one receiver, and the header must say so.
            raise HubError(ErrorCode.ROUTE_NOT_ALLOWED, f"{t.naam} goes to {fixed} only, not to {code}")
        if kind is None:
            raise HubError(ErrorCode.UNKNOWN_RECEIVER, f"receiver {code} is not in the directory on {on}")
        if kind is not t.ontvanger:
            raise HubError(
                ErrorCode.ROUTE_NOT_ALLOWED, f"{t.naam} goes to a {t.ontvanger}; {code} is a {kind}"
            )
        sender = bericht.afzender
        sender_kind = self._kinds.get(sender) or kind_of_code(sender)
        if sender_kind is not t.afzender:
            detail = f"{t.naam} is sent by a {t.afzender}; {sender} is a {sender_kind}"
            raise HubError(ErrorCode.ROUTE_NOT_ALLOWED, detail)

        route = self._routes.get(code)
        if route is not None and route.kind is kind:
            found = route.timeline.at(on.toordinal())
            if found is not None:
                return found
        if registered is not None and kind is PartyKind.AANBIEDER:
            ref = PartyRef(kind, code)
            party = registered(ref)
            if party is not None and party.ref == ref and party.period.contains(on):
                return self._bestemming(ref, on.toordinal())
        raise HubError(ErrorCode.UNKNOWN_RECEIVER, f"receiver {code} is not in the directory on {on}")

    def certificate(self, oin: str | None, fingerprint: str, on: date) -> CertificateRule | None:
        """The directory's entry for a client certificate on that day: by its fingerprint first (a
        pinned certificate), else by the OIN in its subject's serialNumber; None when neither is known."""
        timeline = self._by_fingerprint.get(fingerprint.lower())
        found = timeline.at(on.toordinal()) if timeline else None
        if found is None and oin:
            timeline = self._by_oin.get(oin)
            found = timeline.at(on.toordinal()) if timeline else None
        return found

    def limit_override(self, ref: PartyRef) -> LimitOverride | None:
        """A party's own request limits (routing_rules/limits.csv), if it has any."""
        return self.limits.get(ref)

    def retry_override(self, ref: PartyRef) -> RetryOverride | None:
        """A receiver's own retry bounds (routing_rules/retry.csv), if it has any."""
        return self.retry.get(ref)

    def delivery(self, ref: PartyRef, on: date) -> Bestemming:
        """How `ref` takes delivery on day `on` (the channel in force; MAILBOX when none is set).

        The worker asks this at delivery time, not at intake: a receiver that moves to another
        channel gets its waiting messages the new way.
        """
        return self._bestemming(ref, on.toordinal())

    # -- precomputation ---------------------------------------------------------------------------

    def _chain(self, code: str) -> list[str]:
        """The code and every code it merges into, in order."""
        chain = [code]
        while (m := self._mergers.get(chain[-1])) is not None:
            if m.into in chain:
                raise ValueError(f"mergers form a cycle: {' -> '.join([*chain, m.into])}")
            chain.append(m.into)
        return chain

    def _route(self, code: str) -> _Route:
        """One timeline of decisions for a code, from the slow rule evaluated at every boundary."""
        chain = self._chain(code)
        boundaries = {Period().start}
        for member in chain:
            for table in (self._parties, self._channels):
                timeline = table.get(member)
                if timeline is not None:
                    boundaries.update(timeline.boundaries())
            if (m := self._mergers.get(member)) is not None:
                boundaries.add(m.effective.toordinal())
        kind = self._kinds.get(code) or kind_of_code(code) or PartyKind.GEMEENTE
        return _Route(kind, Timeline((b, self._slow(code, b)) for b in boundaries))

    def _slow(self, code: str, ordinal: int) -> Bestemming | None:
        """The definition resolution is precomputed from: follow mergers in force, then the directory."""
        while (m := self._mergers.get(code)) is not None and m.effective.toordinal() <= ordinal:
            code = m.into
        timeline = self._parties.get(code)
        party = timeline.at(ordinal) if timeline else None
        return self._bestemming(party.ref, ordinal) if party is not None else None

    def _bestemming(self, ref: PartyRef, ordinal: int) -> Bestemming:
        timeline = self._channels.get(ref.code)
        rule = timeline.at(ordinal) if timeline else None
        if rule is None:
            return Bestemming(ref, Kanaal.MAILBOX, None, queue_key(ref))
        return Bestemming(ref, rule.kanaal, rule.endpoint, queue_key(ref))


def _timelines(rows: Iterable[tuple[K, Period, V]]) -> dict[K, Timeline[V]]:
    grouped: dict[K, list[tuple[Period, V]]] = {}
    for key, period, value in rows:
        grouped.setdefault(key, []).append((period, value))
    out: dict[K, Timeline[V]] = {}
    for key, items in grouped.items():
        try:
            out[key] = Timeline.of_periods(items)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return out
