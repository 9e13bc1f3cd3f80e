"""Parties in the exchange and the identifiers that name them.

Pure domain code: no I/O. A party is known by its kind and its code: a gemeente by its 4-digit
CBS code, an aanbieder by its 8-digit AGB code, and the national bodies by a fixed code of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class PartyKind(StrEnum):
    GEMEENTE = "gemeente"
    AANBIEDER = "aanbieder"
    CAK = "cak"
    CIZ = "ciz"
    VWS_PGB = "vws-pgb"
    SVB = "svb"


# The national bodies each have exactly one party; their code is the kind's name in capitals.
# In the iEb and iPgb headers they appear by these codes (see docs/catalogue.md: modelled by us).
FIXED_PARTY_CODES: dict[PartyKind, str] = {
    PartyKind.CAK: "CAK",
    PartyKind.CIZ: "CIZ",
    PartyKind.VWS_PGB: "VWSPGB",
    PartyKind.SVB: "SVB",
}

_GEMEENTE = re.compile(r"[0-9]{4}")
_AGB = re.compile(r"[0-9]{8}")
_BSN = re.compile(r"[0-9]{9}")


def is_gemeentecode(code: str) -> bool:
    return _GEMEENTE.fullmatch(code) is not None


def is_agb_code(code: str) -> bool:
    return _AGB.fullmatch(code) is not None


def is_bsn(value: str) -> bool:
    """A BSN is 9 digits that pass the elfproef (weights 9..2 and -1, sum divisible by 11)."""
    if _BSN.fullmatch(value) is None:
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    total = sum(int(d) * w for d, w in zip(value, weights, strict=True))
    return total % 11 == 0 and total != 0


def kind_of_code(code: str) -> PartyKind | None:
    """The kind a header code belongs to, judged by its form alone."""
    if is_gemeentecode(code):
        return PartyKind.GEMEENTE
    if is_agb_code(code):
        return PartyKind.AANBIEDER
    for kind, fixed in FIXED_PARTY_CODES.items():
        if code == fixed:
            return kind
    return None


def code_is_valid_for(kind: PartyKind, code: str) -> bool:
    if kind is PartyKind.GEMEENTE:
        return is_gemeentecode(code)
    if kind is PartyKind.AANBIEDER:
        return is_agb_code(code)
    return code == FIXED_PARTY_CODES[kind]


@dataclass(frozen=True, slots=True)
class PartyRef:
    """A party as the hub addresses it: kind plus code (e.g. gemeente 0363, aanbieder 12345678)."""

    kind: PartyKind
    code: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.code}"

    @classmethod
    def parse(cls, text: str) -> PartyRef:
        kind, _, code = text.partition(":")
        ref = cls(PartyKind(kind), code)
        if not code_is_valid_for(ref.kind, ref.code):
            raise ValueError(f"{code!r} is not a valid code for a {kind}")
        return ref
