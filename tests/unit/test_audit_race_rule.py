"""Which failed writes the group-commit writer tries again: the race on event numbers, never an
identity conflict (that one is answered as a duplicate or a reused Identificatie)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from hub.adapters.db.audit_store import _lost_a_race
from hub.adapters.db.audit_writes import AddEvent, StoreReceived
from tests.support.records import nieuw


def _violation(message: str) -> IntegrityError:
    return IntegrityError("INSERT ...", {}, Exception(message))


EVENTS_PG = 'duplicate key value violates unique constraint "uq_audit_events_message_id_seq"'
EVENTS_SQLITE = "UNIQUE constraint failed: audit_events.message_id, audit_events.seq"
IDENTITY_PG = 'duplicate key value violates unique constraint "uq_berichten_identity"'
IDENTITY_SQLITE = "UNIQUE constraint failed: berichten.afzender_kind, berichten.afzender_code"


def test_a_race_on_event_numbers_is_written_again_whatever_the_op() -> None:
    for message in (EVENTS_PG, EVENTS_SQLITE):
        assert _lost_a_race(AddEvent("m", "probe", {}), _violation(message))
        # A retour's `answered` event on its heenbericht can race another writer's event on it.
        assert _lost_a_race(StoreReceived(nieuw()), _violation(message))


def test_an_identity_conflict_is_not_a_race() -> None:
    for message in (IDENTITY_PG, IDENTITY_SQLITE):
        assert not _lost_a_race(StoreReceived(nieuw()), _violation(message))


def test_other_errors_are_not_retried() -> None:
    assert not _lost_a_race(AddEvent("m", "probe", {}), ValueError("no"))
