"""The message catalogue: every message the hub handles, independent of release.

A release (iWmo 3.2, iJw 3.2, a future 3.3) only changes the XML namespace and the schema; the facts here
(BerichtCode, who sends it to whom, which retourbericht answers it) hold for every release the schema
registry accepts. Pure domain code: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from hub.domain.parties import PartyKind


class Standaard(StrEnum):
    IWMO = "iWmo"
    IJW = "iJw"
    IEB = "iEb"
    IPGB = "iPgb"

    @property
    def slug(self) -> str:
        """The lower-case form used in namespaces and folder names (iwmo, ijw, ieb, ipgb)."""
        return self.value.lower()


class Rol(StrEnum):
    """How a message relates to others in a conversation."""

    HEEN = "heen"  # starts a conversation
    RETOUR = "retour"  # copies the heenbericht's header (IV028) and answers it
    ANTWOORD = "antwoord"  # answers by reference, with a header of its own (325 -> 323, IV087)


@dataclass(frozen=True, slots=True)
class BerichtType:
    standaard: Standaard
    naam: str  # WMO301, JW315, PGB301 ...
    berichtcode: str  # Vektis COD002, e.g. "414"
    omschrijving: str
    afzender: PartyKind  # the kind of party that sends it
    ontvanger: PartyKind  # the kind of party that receives it
    rol: Rol
    answers: str | None = None  # for RETOUR and ANTWOORD: the naam of the message it answers
    answered_by: str | None = None  # for HEEN: the naam of the retour or antwoord
    answer_within_werkdagen: int | None = None  # deadline for that answer
    modelled_by_project: bool = False  # no public schema: structure modelled by this project

    @property
    def nummer(self) -> str:
        """The three-digit message number shared across standards (301, 325, 405 ...)."""
        return self.naam[-3:]

    @property
    def slug(self) -> str:
        """The lower-case message name used in namespaces (wmo301, jw315, pgb301)."""
        return self.naam.lower()


# (number, description, sender kind, receiver kind, answered by, working days to answer)
_HEEN_ZORG: tuple[tuple[str, str, PartyKind, PartyKind, str, int], ...] = (
    ("301", "Toewijzing", PartyKind.GEMEENTE, PartyKind.AANBIEDER, "302", 3),
    ("305", "Start zorg", PartyKind.AANBIEDER, PartyKind.GEMEENTE, "306", 3),
    ("307", "Stop zorg", PartyKind.AANBIEDER, PartyKind.GEMEENTE, "308", 3),
    ("315", "Verzoek om toewijzing", PartyKind.AANBIEDER, PartyKind.GEMEENTE, "316", 3),
    ("317", "Verzoek om wijziging", PartyKind.AANBIEDER, PartyKind.GEMEENTE, "318", 3),
    ("319", "Antwoordbericht", PartyKind.GEMEENTE, PartyKind.AANBIEDER, "320", 3),
    ("323", "Declaratie", PartyKind.AANBIEDER, PartyKind.GEMEENTE, "325", 10),
)

# COD002 (Vektis), in the order 301 302 305 306 307 308 315 316 317 318 319 320 323 325.
_NUMMERS = ("301", "302", "305", "306", "307", "308", "315", "316", "317", "318", "319", "320", "323", "325")
_CODES = {
    Standaard.IWMO: (
        "414",
        "415",
        "418",
        "419",
        "420",
        "421",
        "444",
        "445",
        "480",
        "481",
        "482",
        "483",
        "484",
        "485",
    ),
    Standaard.IJW: (
        "436",
        "437",
        "438",
        "439",
        "440",
        "441",
        "446",
        "447",
        "486",
        "487",
        "488",
        "489",
        "490",
        "491",
    ),
}
_PREFIX = {Standaard.IWMO: "WMO", Standaard.IJW: "JW", Standaard.IEB: "WMO", Standaard.IPGB: "PGB"}


def _zorg_berichten(standaard: Standaard) -> Iterator[BerichtType]:
    prefix = _PREFIX[standaard]
    code = dict(zip(_NUMMERS, _CODES[standaard], strict=True))
    for nr, omschrijving, afzender, ontvanger, antwoord, dagen in _HEEN_ZORG:
        yield BerichtType(
            standaard,
            prefix + nr,
            code[nr],
            omschrijving,
            afzender,
            ontvanger,
            Rol.HEEN,
            answered_by=prefix + antwoord,
            answer_within_werkdagen=dagen,
        )
        if antwoord == "325":
            yield BerichtType(
                standaard,
                prefix + antwoord,
                code[antwoord],
                "Declaratie-antwoord",
                ontvanger,
                afzender,
                Rol.ANTWOORD,
                answers=prefix + nr,
            )
        else:
            yield BerichtType(
                standaard,
                prefix + antwoord,
                code[antwoord],
                f"Retour {omschrijving.lower()}",
                ontvanger,
                afzender,
                Rol.RETOUR,
                answers=prefix + nr,
            )


def _modelled(
    standaard: Standaard,
    heen: str,
    retour: str,
    codes: tuple[str, str],
    omschrijving: str,
    afzender: PartyKind,
    ontvanger: PartyKind,
) -> Iterator[BerichtType]:
    """A heen/retour pair for a standard with no public schema (iEb, iPgb): modelled by this project.

    Their BerichtCodes are this project's own choice (the 9xx range, unused in COD002) until an official
    bundle says otherwise; an official bundle replaces them by configuration (docs/catalogue.md).
    """
    prefix = _PREFIX[standaard]
    yield BerichtType(
        standaard,
        prefix + heen,
        codes[0],
        omschrijving,
        afzender,
        ontvanger,
        Rol.HEEN,
        answered_by=prefix + retour,
        answer_within_werkdagen=3,
        modelled_by_project=True,
    )
    yield BerichtType(
        standaard,
        prefix + retour,
        codes[1],
        f"Retour {omschrijving.lower()}",
        ontvanger,
        afzender,
        Rol.RETOUR,
        answers=prefix + heen,
        modelled_by_project=True,
    )


def _all() -> tuple[BerichtType, ...]:
    g, cak, pgb = PartyKind.GEMEENTE, PartyKind.CAK, PartyKind.VWS_PGB
    return (
        *_zorg_berichten(Standaard.IWMO),
        *_zorg_berichten(Standaard.IJW),
        *_modelled(Standaard.IEB, "405", "406", ("905", "906"), "Start/stop eigen bijdrage", g, cak),
        *_modelled(Standaard.IEB, "407", "408", ("907", "908"), "Start/stop beschermd wonen", g, cak),
        *_modelled(Standaard.IPGB, "301", "302", ("931", "932"), "Toekenningsbericht pgb", g, pgb),
    )


class Catalogue:
    """Look-ups over the message types. Immutable; build once."""

    def __init__(self, types: tuple[BerichtType, ...]) -> None:
        self._types = types
        self._by_key = {(t.standaard, t.naam): t for t in types}
        self._by_slug = {(t.standaard.slug, t.slug): t for t in types}
        if len(self._by_key) != len(types):
            raise ValueError("duplicate message type in catalogue")

    def __iter__(self) -> Iterator[BerichtType]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def get(self, standaard: Standaard, naam: str) -> BerichtType:
        return self._by_key[(standaard, naam)]

    def find_by_slug(self, standaard_slug: str, bericht_slug: str) -> BerichtType | None:
        """The message type named in a namespace, e.g. ("ijw", "jw301"); None when unknown."""
        return self._by_slug.get((standaard_slug, bericht_slug))

    def of(self, standaard: Standaard) -> tuple[BerichtType, ...]:
        return tuple(t for t in self._types if t.standaard is standaard)

    def answered_by(self, t: BerichtType) -> BerichtType | None:
        return self._by_key[(t.standaard, t.answered_by)] if t.answered_by else None

    def answers(self, t: BerichtType) -> BerichtType | None:
        return self._by_key[(t.standaard, t.answers)] if t.answers else None

    def allowed(self, afzender: PartyKind, ontvanger: PartyKind) -> tuple[BerichtType, ...]:
        """The message types a sender of one kind may send to a receiver of another kind."""
        return tuple(t for t in self._types if t.afzender is afzender and t.ontvanger is ontvanger)


CATALOGUE = Catalogue(_all())
