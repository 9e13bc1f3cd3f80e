"""End to end: the real `hub serve` process, the real RabbitMQ, SQLite and PostgreSQL.

Posts one valid message of every type in the catalogue (each retour and 325 after the message it
answers), consumes each from its receiver's queue, and checks the audit trail; then posts every kind
of bad input and checks the status and the machine-readable code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hub.domain.catalogue import CATALOGUE, BerichtType, Rol, Standaard
from hub.domain.parties import FIXED_PARTY_CODES, PartyKind
from tests.support.berichten import example, with_header
from tests.support.hubproc import HubProcess, delete_topology, drain_queue, postgres_database, prepare_hub

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

FOLDER = {
    Standaard.IWMO: "iwmo-3.2",
    Standaard.IJW: "ijw-3.2",
    Standaard.IEB: "ieb-1.0",
    Standaard.IPGB: "ipgb-1.0",
}
CODE = {
    PartyKind.GEMEENTE: "0363",
    PartyKind.AANBIEDER: "12345678",
    PartyKind.CAK: FIXED_PARTY_CODES[PartyKind.CAK],
    PartyKind.VWS_PGB: FIXED_PARTY_CODES[PartyKind.VWS_PGB],
}
DAY = date(2026, 1, 5)
MAX_BODY = 200_000


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp(f"e2e-{request.param}")
    parties = {kind.value: code for kind, code in CODE.items()} | {"other-gemeente": "0599"}
    if request.param == "sqlite":
        yield from _run(f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}", tmp, parties)
    else:
        with postgres_database() as url:
            yield from _run(url, tmp, parties)


def _run(url: str, tmp: Path, parties: dict[str, str]) -> Iterator[HubProcess]:
    hub = prepare_hub(url, tmp, parties, HUB_MAX_BODY_BYTES=str(MAX_BODY))
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        asyncio.run(delete_topology(hub))


@dataclass
class Sent:
    type: BerichtType
    message_id: str
    receiver: str
    answer: dict[str, Any]


def _ident() -> str:
    return uuid.uuid4().hex[:12]


def _heen(t: BerichtType) -> tuple[bytes, dict[str, str]]:
    header = {"afzender": CODE[t.afzender], "ontvanger": CODE[t.ontvanger], "identificatie": _ident()}
    return with_header(example(FOLDER[t.standaard], t.naam), dagtekening=DAY, **header), header


def _answer(t: BerichtType, heen_header: dict[str, str]) -> bytes:
    body = example(FOLDER[t.standaard], t.naam)
    if t.rol is Rol.RETOUR:  # copies the heenbericht's header (IV028) and adds its own identity
        return with_header(
            body,
            afzender=heen_header["afzender"],
            ontvanger=heen_header["ontvanger"],
            identificatie=heen_header["identificatie"],
            dagtekening=DAY,
            identificatie_retour=_ident(),
            dagtekening_retour=DAY,
        )
    return with_header(  # a 325: its own header, and a reference to the 323
        body,
        afzender=heen_header["ontvanger"],
        ontvanger=heen_header["afzender"],
        identificatie=_ident(),
        dagtekening=DAY,
        verwijzing_identificatie=heen_header["identificatie"],
        verwijzing_dagtekening=DAY,
    )


async def _post(
    session: aiohttp.ClientSession,
    hub: HubProcess,
    token_of: str,
    body: bytes,
    content_type: str = "application/xml",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type}
    if token_of:
        headers["Authorization"] = f"Bearer {hub.tokens[token_of]}"
    async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_every_message_type_reaches_its_receivers_queue_with_an_audit_trail(hub: HubProcess) -> None:
    sent: list[Sent] = []
    async with aiohttp.ClientSession() as session:
        for t in CATALOGUE:
            if t.rol is not Rol.HEEN:
                continue
            body, header = _heen(t)
            status, answer = await _post(session, hub, t.afzender.value, body)
            assert status == 202, (t.naam, answer)
            sent.append(Sent(t, answer["message_id"], answer["receiver"], answer))
            reply = CATALOGUE.answered_by(t)
            assert reply is not None
            status, answer = await _post(session, hub, reply.afzender.value, _answer(reply, header))
            assert status == 202, (reply.naam, answer)
            sent.append(Sent(reply, answer["message_id"], answer["receiver"], answer))

        assert {s.type.naam for s in sent} == {t.naam for t in CATALOGUE}
        for s in sent:
            assert s.receiver == f"{s.type.ontvanger.value}:{CODE[s.type.ontvanger]}", s.type.naam
            assert s.answer["standard"] == s.type.standaard.value and s.answer["message"] == s.type.naam

        by_queue: dict[str, set[str]] = {}
        for s in sent:
            by_queue.setdefault(hub.queue(s.receiver), set()).add(s.message_id)
        for queue, ids in by_queue.items():
            got = await drain_queue(queue, expect=len(ids))
            assert {m.message_id for m in got} == ids, queue
            for m in got:
                assert m.content_type == "application/xml"
                assert m.headers["receiver"] and m.headers["berichttype"] and m.headers["afzender"]

        # The audit trail, as the sender sees it; a retour names the heenbericht it answers.
        for s in sent:
            token = hub.tokens[s.type.afzender.value]
            async with session.get(
                f"{hub.url}{s.answer['status_url']}", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == 200
                trail = await r.json()
            assert trail["status"] == "forwarded"
            assert [e["event"] for e in trail["events"]][:3] == ["received", "accepted", "published"]
            if s.type.rol is not Rol.HEEN:
                assert trail["answers_message_id"] is not None
                assert trail["conversation_id"] == trail["answers_message_id"]
            else:  # every heenbericht here was answered: the conversation says so
                conversation = trail["conversation"]
                assert conversation["answer_due"] and conversation["answered_at"], s.type.naam
                assert not conversation["overdue"]
                assert next(b["message_id"] for b in conversation["berichten"]) == s.message_id
                assert len(conversation["berichten"]) == 2


async def test_bad_input_gets_the_right_status_and_code(hub: HubProcess) -> None:
    t = CATALOGUE.get(Standaard.IWMO, "WMO301")
    valid, header = _heen(t)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<Bericht>&lol2;</Bericht>"
    )
    cases: list[tuple[str, str, bytes, str, int, str]] = [
        ("not xml", "gemeente", b"this is not xml", "application/xml", 400, "not_well_formed"),
        ("billion laughs", "gemeente", laughs, "application/xml", 400, "hostile_xml"),
        (
            "too large",
            "gemeente",
            b"<a>" + b"x" * (MAX_BODY + 10) + b"</a>",
            "application/xml",
            413,
            "too_large",
        ),
        ("wrong content type", "gemeente", valid, "application/json", 415, "unsupported_media_type"),
        ("no token", "", valid, "application/xml", 401, "unauthenticated"),
        ("other sender", "other-gemeente", valid, "application/xml", 403, "afzender_mismatch"),
        ("schema invalid", "gemeente", _schema_invalid(valid), "application/xml", 422, "schema_invalid"),
        (
            "wrong namespace",
            "gemeente",
            valid.replace(b"/3_2/wmo301/", b"/9_9/wmo301/"),
            "application/xml",
            422,
            "unknown_message",
        ),
        (
            "unknown receiver",
            "gemeente",
            with_header(valid, ontvanger="99999999"),
            "application/xml",
            422,
            "unknown_receiver",
        ),
        (
            "retour for nothing",
            "aanbieder",
            _answer(CATALOGUE.get(Standaard.IWMO, "WMO302"), {**header, "identificatie": "NEVERSENT"}),
            "application/xml",
            422,
            "unknown_conversation",
        ),
    ]
    async with aiohttp.ClientSession() as session:
        for name, who, body, ctype, status, code in cases:
            got, answer = await _post(session, hub, who, body, ctype)
            assert (got, answer["error"]["code"]) == (status, code), (name, answer)
            assert answer["request_id"] and answer["error"]["message"], name
            if code == "schema_invalid":
                errors = answer["error"]["errors"]
                assert errors and all(e["reason"] and e["line"] for e in errors), errors

        # A duplicate is answered with the original; the same identity with other content is refused.
        first, a1 = await _post(session, hub, "gemeente", valid)
        again, a2 = await _post(session, hub, "gemeente", valid)
        assert (first, again) == (202, 200) and a2["duplicate"] and a2["message_id"] == a1["message_id"]
        changed = valid + b"\n"  # same identity, other bytes
        status, a3 = await _post(session, hub, "gemeente", changed)
        assert (status, a3["error"]["code"]) == (409, "identificatie_reused")

        # Only the sender and the receiver may see a message.
        url = f"{hub.url}/v1/berichten/{a1['message_id']}"
        for who, expected in (("gemeente", 200), ("aanbieder", 200), ("other-gemeente", 404), ("cak", 404)):
            async with session.get(url, headers={"Authorization": f"Bearer {hub.tokens[who]}"}) as r:
                assert r.status == expected, who
        async with session.get(f"{hub.url}/v1/openapi.json") as r:
            assert r.status == 200 and "/v1/berichten" in (await r.json())["paths"]
        async with session.get(f"{hub.url}/readyz") as r:
            assert r.status == 200, await r.text()
    await drain_queue(hub.queue("aanbieder:12345678"))


def _schema_invalid(valid: bytes) -> bytes:
    """Break the body the way senders do: a date that does not exist."""
    start = valid.index(b"Dagtekening>") + len(b"Dagtekening>")
    return valid[:start] + b"2026-02-30" + valid[start + 10 :]
