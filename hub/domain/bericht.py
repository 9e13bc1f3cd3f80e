"""What the hub knows about one message after validation: its type, release and header facts.

The values built for every valid message are NamedTuples, not frozen dataclasses: as immutable, and a
frozen dataclass's __init__ sets each field through object.__setattr__, which made these four ~3 us
of the ~55 us it takes to validate a 4 KB message. (A NamedTuple equals a plain tuple of the same
values; the hub compares these only with their own kind.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from hub.domain.catalogue import BerichtType, Rol
from hub.domain.errors import ErrorCode


class BerichtIdentificatie(NamedTuple):
    """Identificatie + Dagtekening: with the sender, the identity of a message (TR056)."""

    identificatie: str
    dagtekening: date


class Kop(NamedTuple):
    """Header facts the router needs, as written in the message.

    For a retourbericht the header is a copy of the heenbericht's (IV028): Afzender and Ontvanger are
    those of the heenbericht, `identificatie` names the heenbericht, and `retour` is the retour's own id.
    For a 325 `verwijzing` is the DeclaratieIdentificatie of the 323 it answers.
    """

    berichtcode: str
    berichtversie: str
    berichtsubversie: str
    afzender: str
    ontvanger: str
    identificatie: BerichtIdentificatie
    retour: BerichtIdentificatie | None = None
    verwijzing: BerichtIdentificatie | None = None
    retourcodes: tuple[str, ...] = ()  # every RetourCode in a retour or 325, in document order, once each


class Bericht(NamedTuple):
    """A message understood: its type, release and header, with who really sends it to whom."""

    type: BerichtType
    release: str
    kop: Kop

    @property
    def afzender(self) -> str:
        """The party that sends this message (for a retour: the heenbericht's Ontvanger)."""
        return self.kop.ontvanger if self.type.rol is Rol.RETOUR else self.kop.afzender

    @property
    def ontvanger(self) -> str:
        """The party this message is meant for, by its header (for a retour: the heenbericht's Afzender)."""
        return self.kop.afzender if self.type.rol is Rol.RETOUR else self.kop.ontvanger

    @property
    def identiteit(self) -> BerichtIdentificatie:
        """This message's own identity (for a retour: IdentificatieRetour/DagtekeningRetour)."""
        if self.type.rol is Rol.RETOUR:
            assert self.kop.retour is not None
            return self.kop.retour
        return self.kop.identificatie

    @property
    def beantwoordt(self) -> BerichtIdentificatie | None:
        """The identity of the message this one answers, or None for a heenbericht."""
        if self.type.rol is Rol.RETOUR:
            return self.kop.identificatie
        if self.type.rol is Rol.ANTWOORD:
            return self.kop.verwijzing
        return None


@dataclass(frozen=True, slots=True)
class Fout:
    """One validation error, in words a sender's developer understands. Never carries a BSN."""

    reason: str
    line: int | None = None
    path: str | None = None


class Validatie(NamedTuple):
    """The verdict on one document: valid with its Bericht, or invalid with a code and the errors."""

    bericht: Bericht | None
    code: ErrorCode | None = None
    errors: tuple[Fout, ...] = ()
    # What could be read even from an invalid document (for reporting); never used for routing.
    type: BerichtType | None = None
    release: str | None = None
    kop: Kop | None = None

    @property
    def valid(self) -> bool:
        return self.bericht is not None
