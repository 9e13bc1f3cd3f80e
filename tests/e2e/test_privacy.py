"""Privacy by design, checked end to end: known BSNs go through the real `hub serve` + `hub worker` +
PostgreSQL + RabbitMQ + a push receiver, accepted, delivered, refused in every way, dead-lettered; then
every log line of both processes, /metrics, every answer the hub gave (errors, status and trail,
mailbox, dead letters, the CLI) and EVERY column of EVERY table except bericht_bodies.body are
searched for those BSNs: none may appear. (tests/e2e/test_observability_e2e.py checks the same for
the gateway's log, metrics and error bodies on SQLite; this one adds the worker, PostgreSQL, the
database itself and the read APIs.)
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from hub.domain.parties import is_bsn
from tests.support.berichten import EXAMPLES, example, with_header
from tests.support.hubproc import REPO, HubProcess, delete_topology, postgres_database, prepare_hub, run_cli
from tests.support.receiver import Receiver

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

PUSH = "12345678"
MAILBOX = "87654321"


def _bsns(n: int) -> list[str]:
    """n valid BSNs that occur nowhere in the examples (so a hit can only come from this test)."""
    corpus = b"".join(p.read_bytes() for p in EXAMPLES.rglob("*.xml"))
    out: list[str] = []
    candidate = 271_828_180
    while len(out) < n:
        s = str(candidate)
        if is_bsn(s) and s.encode() not in corpus:
            out.append(s)
        candidate += 1
    return out


BSNS = _bsns(10)


def _with_bsn(xml: bytes, bsn: str) -> bytes:
    body, n = re.subn(rb"(<(\w+):Bsn>)\d+(</\2:Bsn>)", rb"\g<1>" + bsn.encode() + rb"\g<3>", xml)
    assert n >= 1
    return body


def _wmo301(bsn: str, ontvanger: str, ident: str | None = None, afzender: str = "0363") -> bytes:
    return _with_bsn(
        with_header(
            example("iwmo-3.2", "WMO301"),
            afzender=afzender,
            ontvanger=ontvanger,
            identificatie=ident or uuid.uuid4().hex[:12],
            dagtekening=date(2026, 1, 5),
        ),
        bsn,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    await r.stop()


@pytest.fixture
def db_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def hub(tmp_path: Path, receiver: Receiver, db_url: str) -> Iterator[HubProcess]:
    rules = tmp_path / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules)
    (rules / "channels.csv").write_text(
        "party,kanaal,endpoint,valid_from,valid_until\n"
        f"aanbieder:{PUSH},push,{receiver.endpoint},,\n"
        f"aanbieder:{MAILBOX},mailbox,,,\n"
    )
    hub = prepare_hub(
        db_url,
        tmp_path,
        {"gemeente": "0363", "push": PUSH, "mailbox": MAILBOX},
        HUB_ROUTING_RULES=str(rules),
        HUB_RETRY_BASE_SECONDS="1",
        HUB_RETRY_CAP_SECONDS="1",
    )
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
        asyncio.run(delete_topology(hub))


async def _every_column(db_url: str) -> dict[str, str]:
    """table -> all its rows as text (jsonb of each row; bericht_bodies without its body)."""
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE'"
            )
        ]
        out = {}
        for table in tables:
            drop = " - 'body'" if table == "bericht_bodies" else ""
            rows = await conn.fetch(f'SELECT (to_jsonb(t){drop})::text AS j FROM "{table}" t')
            out[table] = "\n".join(r["j"] for r in rows)
        return out
    finally:
        await conn.close()


async def _bodies(db_url: str) -> str:
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        return "\n".join(
            bytes(r["body"]).decode() for r in await conn.fetch("SELECT body FROM bericht_bodies")
        )
    finally:
        await conn.close()


def _hits(text: str) -> set[str]:
    """The BSNs in a text, also as hex (a bytea column in jsonb) or with separators stripped."""
    hexed = text.lower()
    return {b for b in BSNS if b in text or b.encode().hex() in hexed}


async def test_no_bsn_in_logs_metrics_answers_or_any_column(
    hub: HubProcess, receiver: Receiver, db_url: str
) -> None:
    gemeente = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    mailbox = {"Authorization": f"Bearer {hub.tokens['mailbox']}"}
    admin = {"Authorization": f"Bearer {hub.env['HUB_ADMIN_TOKEN']}"}
    refused_with = 0

    def behaviour(mid: str, seen: int) -> int:
        return 400 if mid == dead_id else 200

    dead_id = ""
    receiver.behaviour = behaviour
    await receiver.start()
    hub.start_worker()
    answers: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:

        async def post(body: bytes, expect: int, token: dict[str, str] = gemeente) -> dict[str, str]:
            async with s.post(f"{hub.url}/v1/berichten", data=body, headers=token) as r:
                text = await r.text()
                answers.append(text)
                assert r.status == expect, text
                answer: dict[str, str] = await r.json()
                return answer

        pushed = (await post(_wmo301(BSNS[0], PUSH), 202))["message_id"]
        boxed = (await post(_wmo301(BSNS[1], MAILBOX), 202))["message_id"]
        dead_id = (await post(_wmo301(BSNS[2], PUSH), 202))["message_id"]
        # Refusals of every kind, each with a BSN where it hurts.
        ident = uuid.uuid4().hex[:12]
        cases = [
            (_wmo301(BSNS[3], PUSH).replace(BSNS[3].encode(), BSNS[3].encode() + b"0"), 422),
            (_wmo301(BSNS[4], PUSH).replace(b"<wmo301:Bsn>", f"<wmo301:Bsn b='{BSNS[4]}'>".encode()), 422),
            (b"<Bericht><Bsn>" + BSNS[5].encode() + b"</Bsn>", 400),
            (_wmo301(BSNS[6], PUSH, afzender="0599"), 403),
            (_with_bsn(with_header(example("iwmo-3.2", "WMO302"), identificatie="NOPE1"), BSNS[7]), 422),
            (_wmo301(BSNS[8], PUSH, ident=ident), 202),
            (_wmo301(BSNS[9], PUSH, ident=ident), 409),  # the same identity with other content
        ]
        for body, expect in cases:
            token = (
                {**gemeente, "Authorization": f"Bearer {hub.tokens['push']}"}
                if b"NOPE1" in body
                else gemeente
            )
            await post(body, expect, token)
            refused_with += expect >= 400

        # Delivery: pushed, dead-lettered (400 from the receiver), fetched from the mailbox and acked.
        assert await receiver.wait_for(2, within=20)
        for _ in range(100):
            async with s.get(f"{hub.url}/v1/berichten/{dead_id}", headers=gemeente) as r:
                if (await r.json())["status"] == "dead_lettered":
                    break
            await asyncio.sleep(0.2)
        async with s.get(f"{hub.url}/v1/mailbox", headers=mailbox) as r:
            answers.append(await r.text())
        async with s.get(f"{hub.url}/v1/mailbox/{boxed}", headers=mailbox) as r:
            assert BSNS[1] in await r.text()  # the receiver gets its message, BSN and all
        async with s.post(f"{hub.url}/v1/mailbox/{boxed}/ack", headers=mailbox) as r:
            answers.append(await r.text())
        for mid in (pushed, boxed, dead_id):
            async with s.get(f"{hub.url}/v1/berichten/{mid}", headers=admin) as r:
                answers.append(await r.text())
        async with s.get(f"{hub.url}/v1/admin/deadletters", headers=admin) as r:
            text = await r.text()
            assert dead_id in text
            answers.append(text)
        async with s.get(f"{hub.url}/metrics") as r:
            answers.append(await r.text())
    answers.append(run_cli(hub.env, "deadletters", "list"))
    assert receiver.accepted[pushed] == 1
    hub.stop()  # flush and close the logs of both processes

    logs = {p.name: p.read_text(errors="replace") for p in hub.log_path.parent.glob("*.log")}
    assert set(logs) >= {"hub.log", "worker.log"} and all(logs.values())
    columns = await _every_column(db_url)
    assert {"berichten", "audit_events", "weigeringen", "bericht_bodies"} <= set(columns), set(columns)
    # The search works: the bodies (excluded) do hold the BSNs of the stored messages.
    assert _hits(await _bodies(db_url)) >= {BSNS[0], BSNS[1], BSNS[2], BSNS[8]}

    found = {f"log {name}": _hits(text) for name, text in logs.items()}
    found |= {f"answer {i}": _hits(text) for i, text in enumerate(answers)}
    found |= {f"table {table}": _hits(text) for table, text in columns.items()}
    leaks = {where: hits for where, hits in found.items() if hits}
    rows = {t: text.count("\n") + 1 if text else 0 for t, text in columns.items()}
    print(
        f"\nprivacy: {len(BSNS)} BSNs, {len(answers)} answers, log lines "
        f"{sum(t.count(chr(10)) for t in logs.values())}, rows per table {rows}, refusals {refused_with}, "
        f"leaks {leaks}"
    )
    assert rows["weigeringen"] >= refused_with and rows["audit_events"] > 0
    assert not leaks
