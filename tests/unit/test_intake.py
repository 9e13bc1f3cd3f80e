"""The intake service over fakes: the order of checks, duplicates, retries and the 2xx promise."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date, timedelta

import pytest

from hub.domain.bericht import Bericht, BerichtIdentificatie, Fout, Kop, Validatie
from hub.domain.catalogue import CATALOGUE, Standaard
from hub.domain.directory import Party
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.routing import RoutingRules
from hub.service.intake import IN_PROGRESS_WINDOW_S, Intake, Refused, Unavailable
from hub.service.ports import BerichtStatus, StoredBericht
from tests.support.fakes import FakeAuditStore, FakePublisher

DAY = date(2026, 3, 2)
GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
OTHER_AANBIEDER = PartyRef(PartyKind.AANBIEDER, "87654321")


def _bericht(
    naam: str,
    afzender: str,
    ontvanger: str,
    ident: str = "A1",
    *,
    retour: str | None = None,
    verwijzing: str | None = None,
) -> Bericht:
    t = CATALOGUE.get(Standaard.IWMO, naam)
    kop = Kop(
        berichtcode=t.berichtcode,
        berichtversie="3",
        berichtsubversie="2",
        afzender=afzender,
        ontvanger=ontvanger,
        identificatie=BerichtIdentificatie(ident, DAY),
        retour=BerichtIdentificatie(retour, DAY) if retour else None,
        verwijzing=BerichtIdentificatie(verwijzing, DAY) if verwijzing else None,
    )
    return Bericht(t, "3.2", kop)


class FakeValidator:
    """Maps the posted bytes to a prepared verdict: the intake must not care how validation works."""

    def __init__(self) -> None:
        self.verdicts: dict[bytes, Validatie] = {}

    def add(self, body: bytes, bericht: Bericht) -> bytes:
        self.verdicts[body] = Validatie(bericht)
        return body

    def validate(self, data: bytes, *, on: date | None = None) -> Validatie:
        return self.verdicts.get(
            data,
            Validatie(None, ErrorCode.SCHEMA_INVALID, (Fout("Bsn: value does not match", 7, "/Bericht"),)),
        )


class NoRegistered:
    async def registered(self, ref: PartyRef) -> Party | None:
        return Party(ref, "run-time registered") if ref == OTHER_AANBIEDER else None


Parts = tuple[Intake, FakeValidator, FakeAuditStore, FakePublisher]


@pytest.fixture
def parts() -> Parts:
    rules = RoutingRules(
        "test",
        [
            Party(GEMEENTE, "Amsterdam"),
            Party(PartyRef(PartyKind.GEMEENTE, "0599"), "Rotterdam"),
            Party(AANBIEDER, "Zorg BV"),
            Party(PartyRef(PartyKind.CAK, "CAK"), "CAK"),
        ],
    )
    validator, store, publisher = FakeValidator(), FakeAuditStore(), FakePublisher()
    intake = Intake(
        validator=validator,
        rules=lambda: rules,
        store=store,
        publisher=publisher,
        parties=NoRegistered(),
        today=lambda: DAY,
    )
    return intake, validator, store, publisher


async def test_accepted_message_is_stored_and_published_before_returning_and_marked_after(
    parts: Parts,
) -> None:
    intake, validator, store, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    accepted = await intake.submit(body, GEMEENTE, request_id="r1")
    assert accepted.receiver == AANBIEDER and not accepted.duplicate
    # The promise at return: the row is committed and the publish confirmed.
    assert store.rows[accepted.message_id].status is BerichtStatus.RECEIVED
    assert [p[0].message_id for p in publisher.published] == [accepted.message_id]
    await intake.settle()
    assert store.rows[accepted.message_id].status is BerichtStatus.FORWARDED
    assert [e.kind for e in await store.events(accepted.message_id)] == ["received", "accepted", "published"]


async def test_the_answer_does_not_wait_for_the_forwarded_mark(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake, validator, store, publisher = parts
    gate = asyncio.Event()
    mark = store.mark_forwarded

    async def slow_mark(message_id: str, *, queue: str) -> None:
        await gate.wait()
        await mark(message_id, queue=queue)

    monkeypatch.setattr(store, "mark_forwarded", slow_mark)
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    accepted = await asyncio.wait_for(intake.submit(body, GEMEENTE, request_id="r1"), timeout=10)
    # A copy posted while the mark is still on its way is a duplicate: it is in its queue already.
    again = await asyncio.wait_for(intake.submit(body, GEMEENTE, request_id="r1b"), timeout=10)
    assert again.duplicate and again.message_id == accepted.message_id
    assert len(publisher.published) == 1
    assert store.rows[accepted.message_id].status is BerichtStatus.RECEIVED
    gate.set()
    await intake.settle()
    assert store.rows[accepted.message_id].status is BerichtStatus.FORWARDED


async def test_a_forwarded_mark_that_meets_a_database_outage_is_tried_again(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake, validator, store, _ = parts
    monkeypatch.setattr("hub.service.intake._MARK_RETRY_PAUSES", (0.01, 0.01, 0.01))
    mark = store.mark_forwarded
    calls = 0

    async def flaky_mark(message_id: str, *, queue: str) -> None:
        nonlocal calls
        calls += 1
        store.down = calls < 3  # the first two attempts meet the outage
        try:
            await mark(message_id, queue=queue)
        finally:
            store.down = False

    monkeypatch.setattr(store, "mark_forwarded", flaky_mark)
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    accepted = await intake.submit(body, GEMEENTE, request_id="r1")
    await intake.settle()
    assert calls == 3
    assert store.rows[accepted.message_id].status is BerichtStatus.FORWARDED


async def test_a_forwarded_mark_that_never_gets_through_leaves_the_row_received(
    parts: Parts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    intake, validator, store, publisher = parts
    monkeypatch.setattr("hub.service.intake._MARK_RETRY_PAUSES", (0.01, 0.01))
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    accepted = await intake.submit(body, GEMEENTE, request_id="r1")
    store.down = True  # after the answer: the 2xx stands, the message is in its queue
    await intake.settle()
    store.down = False
    assert store.rows[accepted.message_id].status is BerichtStatus.RECEIVED
    assert [p[0].message_id for p in publisher.published] == [accepted.message_id]
    assert any("was not marked forwarded" in r.getMessage() for r in caplog.records)


async def test_invalid_message_is_refused_with_its_errors_and_audited(parts: Parts) -> None:
    intake, _, store, publisher = parts
    with pytest.raises(Refused) as err:
        await intake.submit(b"broken", GEMEENTE, request_id="r2")
    assert err.value.code is ErrorCode.SCHEMA_INVALID and err.value.errors[0].line == 7
    assert [w.code for w in store.refusals] == [ErrorCode.SCHEMA_INVALID]
    assert not publisher.published and not store.rows


async def test_afzender_must_be_the_authenticated_party(parts: Parts) -> None:
    intake, validator, store, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0599", "12345678"))
    with pytest.raises(Refused) as err:
        await intake.submit(body, GEMEENTE, request_id="r3")
    assert err.value.code is ErrorCode.AFZENDER_MISMATCH
    assert not publisher.published and not store.rows


async def test_duplicate_returns_the_original_and_is_not_forwarded_twice(parts: Parts) -> None:
    intake, validator, _, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    first = await intake.submit(body, GEMEENTE, request_id="r4")
    again = await intake.submit(body, GEMEENTE, request_id="r5")
    assert again.duplicate and again.message_id == first.message_id
    assert len(publisher.published) == 1


async def test_same_identity_with_other_content_is_refused(parts: Parts) -> None:
    intake, validator, _, _ = parts
    await intake.submit(
        validator.add(b"301-a", _bericht("WMO301", "0363", "12345678")), GEMEENTE, request_id="a"
    )
    with pytest.raises(Refused) as err:
        await intake.submit(
            validator.add(b"301-b", _bericht("WMO301", "0363", "12345678")), GEMEENTE, request_id="b"
        )
    assert err.value.code is ErrorCode.IDENTIFICATIE_REUSED


async def test_broker_down_gives_unavailable_and_the_retry_publishes_under_the_same_id(parts: Parts) -> None:
    intake, validator, store, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    publisher.down = True
    with pytest.raises(Unavailable):
        await intake.submit(body, GEMEENTE, request_id="r6")
    (row,) = store.rows.values()
    assert row.status is BerichtStatus.RECEIVED and not publisher.published
    publisher.down = False
    accepted = await intake.submit(body, GEMEENTE, request_id="r7")
    assert accepted.message_id == row.message_id and not accepted.duplicate
    await intake.settle()
    assert store.rows[row.message_id].status is BerichtStatus.FORWARDED
    assert "publish_failed" in [e.kind for e in await store.events(row.message_id)]


async def test_database_down_gives_unavailable_and_nothing_is_published(parts: Parts) -> None:
    intake, validator, store, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    store.down = True
    with pytest.raises(Unavailable):
        await intake.submit(body, GEMEENTE, request_id="r8")
    assert not publisher.published


async def test_retour_goes_to_the_sender_of_the_heenbericht_and_joins_its_conversation(parts: Parts) -> None:
    intake, validator, store, publisher = parts
    heen = await intake.submit(
        validator.add(b"301", _bericht("WMO301", "0363", "12345678", "H1")), GEMEENTE, request_id="h"
    )
    # A 302 copies the 301's header: Afzender 0363, Ontvanger 12345678; the aanbieder sends it.
    retour = _bericht("WMO302", "0363", "12345678", "H1", retour="R1")
    accepted = await intake.submit(validator.add(b"302", retour), AANBIEDER, request_id="r")
    assert accepted.receiver == GEMEENTE
    row = store.rows[accepted.message_id]
    assert row.answers_message_id == heen.message_id and row.conversation_id == heen.message_id
    assert row.afzender == AANBIEDER and row.identificatie == "R1"
    assert len(publisher.published) == 2


async def test_retour_for_an_unknown_heenbericht_is_refused(parts: Parts) -> None:
    intake, validator, _, _ = parts
    retour = _bericht("WMO302", "0363", "12345678", "NEVER", retour="R1")
    with pytest.raises(Refused) as err:
        await intake.submit(validator.add(b"302", retour), AANBIEDER, request_id="r")
    assert err.value.code is ErrorCode.UNKNOWN_CONVERSATION


async def test_declaratie_antwoord_links_to_the_declaratie(parts: Parts) -> None:
    intake, validator, store, _ = parts
    decl = await intake.submit(
        validator.add(b"323", _bericht("WMO323", "12345678", "0363", "D1")), AANBIEDER, request_id="d"
    )
    antwoord = _bericht("WMO325", "0363", "12345678", "X9", verwijzing="D1")
    accepted = await intake.submit(validator.add(b"325", antwoord), GEMEENTE, request_id="a")
    assert accepted.receiver == AANBIEDER
    assert store.rows[accepted.message_id].answers_message_id == decl.message_id


async def test_unknown_receiver_is_refused_and_a_run_time_registered_aanbieder_is_known(parts: Parts) -> None:
    intake, validator, _, _ = parts
    with pytest.raises(Refused) as err:
        await intake.submit(
            validator.add(b"x", _bericht("WMO301", "0363", "11112222")), GEMEENTE, request_id="u"
        )
    assert err.value.code is ErrorCode.UNKNOWN_RECEIVER
    accepted = await intake.submit(
        validator.add(b"y", _bericht("WMO301", "0363", "87654321", "Y")), GEMEENTE, request_id="v"
    )
    assert accepted.receiver == OTHER_AANBIEDER


class SlowPublisher(FakePublisher):
    """Publishes take a moment, so concurrent posts of one message overlap."""

    async def publish(self, bericht: StoredBericht, body: bytes) -> str:
        await asyncio.sleep(0.05)
        return await super().publish(bericht, body)


async def test_the_same_message_posted_twice_at_once_is_published_once(parts: Parts) -> None:
    _, validator, store, _ = parts
    publisher = SlowPublisher()
    rules = RoutingRules("test", [Party(GEMEENTE, "Amsterdam"), Party(AANBIEDER, "Zorg BV")])
    intake = Intake(
        validator=validator,
        rules=lambda: rules,
        store=store,
        publisher=publisher,
        parties=NoRegistered(),
        today=lambda: DAY,
    )
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    first, second = await asyncio.gather(
        intake.submit(body, GEMEENTE, request_id="a"), intake.submit(body, GEMEENTE, request_id="b")
    )
    assert len(publisher.published) == 1
    assert first.message_id == second.message_id
    assert sorted([first.duplicate, second.duplicate]) == [False, True]


async def test_a_young_received_row_of_another_process_is_not_published_again(parts: Parts) -> None:
    intake, validator, store, publisher = parts
    body = validator.add(b"301", _bericht("WMO301", "0363", "12345678"))
    publisher.down = True
    with pytest.raises(Unavailable):
        await intake.submit(body, GEMEENTE, request_id="a")
    (row,) = store.rows.values()
    # As if another gateway stored it a moment ago and is publishing it now: no publish_failed yet.
    store.log = [e for e in store.log if e.kind != "publish_failed"]
    publisher.down = False
    with pytest.raises(Unavailable) as busy:
        await intake.submit(body, GEMEENTE, request_id="b")
    assert busy.value.what == "in_progress" and not publisher.published
    # Once the window has passed, the row counts as abandoned: the retry publishes it.
    store.rows[row.message_id] = dataclasses.replace(
        row, received_at=row.received_at - timedelta(seconds=IN_PROGRESS_WINDOW_S + 1)
    )
    accepted = await intake.submit(body, GEMEENTE, request_id="c")
    assert accepted.message_id == row.message_id and len(publisher.published) == 1


@pytest.mark.parametrize(
    ("naam", "afzender", "ontvanger", "sender"),
    [
        ("WMO301", "12345678", "12345678", AANBIEDER),  # a 301 sent by an aanbieder
        ("WMO301", "0363", "0599", GEMEENTE),  # a 301 to a gemeente
        ("WMO315", "12345678", "87654321", AANBIEDER),  # aanbieder to aanbieder
    ],
)
async def test_a_type_not_allowed_between_the_parties_is_route_not_allowed_and_audited(
    parts: Parts, naam: str, afzender: str, ontvanger: str, sender: PartyRef
) -> None:
    # This project's schemas already refuse these headers (their code patterns); the route check is
    # the line behind them, for a bundle with looser types: here the validator lets them through.
    intake, validator, store, publisher = parts
    with pytest.raises(Refused) as err:
        await intake.submit(
            validator.add(naam.encode(), _bericht(naam, afzender, ontvanger)), sender, request_id="rn"
        )
    assert err.value.code is ErrorCode.ROUTE_NOT_ALLOWED
    assert [w.code for w in store.refusals] == [ErrorCode.ROUTE_NOT_ALLOWED]
    assert not publisher.published and not store.rows


async def test_answer_deadlines_are_counted_in_working_days_from_the_day_of_receipt(parts: Parts) -> None:
    intake, validator, store, _ = parts
    assert DAY.isoweekday() == 1  # Monday 2 March 2026
    toewijzing = await intake.submit(
        validator.add(b"301d", _bericht("WMO301", "0363", "12345678", "DL1")), GEMEENTE, request_id="d1"
    )
    declaratie = await intake.submit(
        validator.add(b"323d", _bericht("WMO323", "12345678", "0363", "DL2")), AANBIEDER, request_id="d2"
    )
    # Three working days for the 302 (Thursday), ten for the 325 (Monday two weeks on).
    assert store.rows[toewijzing.message_id].answer_due == date(2026, 3, 5)
    assert store.rows[declaratie.message_id].answer_due == date(2026, 3, 16)
    retour = await intake.submit(
        validator.add(b"302d", _bericht("WMO302", "0363", "12345678", "DL1", retour="R1")),
        AANBIEDER,
        request_id="d3",
    )
    assert store.rows[retour.message_id].answer_due is None  # an answer itself awaits none
