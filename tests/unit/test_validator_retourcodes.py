"""Retourberichten and 325s: their RetourCodes are read for the conversation view."""

from __future__ import annotations

import pytest

from hub.domain.catalogue import CATALOGUE, Rol
from hub.settings import Settings
from hub.validation.registry import SchemaRegistry
from hub.validation.validator import Validator
from tests.support.berichten import example

FOLDER = {"iWmo": "iwmo-3.2", "iJw": "ijw-3.2", "iEb": "ieb-1.0", "iPgb": "ipgb-1.0"}
VALIDATOR = Validator(SchemaRegistry.load(Settings().schema_releases))


@pytest.mark.parametrize(
    "naam", [t.naam for t in CATALOGUE if t.rol is not Rol.HEEN and t.standaard.value == "iJw"]
)
def test_every_retour_and_antwoord_reports_its_retourcodes(naam: str) -> None:
    t = next(t for t in CATALOGUE if t.naam == naam)
    body = example(FOLDER[t.standaard.value], naam)
    result = VALIDATOR.validate(body)
    assert result.bericht is not None, result.errors
    codes = result.bericht.kop.retourcodes
    assert codes and all(len(c) == 4 and c.isdigit() for c in codes)
    assert len(set(codes)) == len(codes)
    written = body.count(b"RetourCode>") // 2
    assert 1 <= len(codes) <= written


def test_a_heenbericht_has_none() -> None:
    result = VALIDATOR.validate(example("iwmo-3.2", "WMO301"))
    assert result.bericht is not None and result.bericht.kop.retourcodes == ()
