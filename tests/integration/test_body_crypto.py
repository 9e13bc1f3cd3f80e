"""Bodies encrypted at rest (HUB_BODY_KEYS) on SQLite and PostgreSQL: unreadable in the table, plaintext
through body(), re-encrypted by rotation so old keys can go, and a clear error for a missing or wrong key."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from sqlalchemy import select

from hub.adapters.db import SqlAlchemyAuditStore, create_audit_store
from hub.adapters.db.body_crypto import BodyCipher, BodyKeysInvalid
from hub.adapters.db.engine import create_engine
from hub.adapters.db.tables import bericht_bodies
from hub.entrypoints.cli import main
from hub.service.ports import BodyUnreadable
from tests.integration.conftest import run_async
from tests.support.records import nieuw

K1 = "k1:" + base64.b64encode(b"1" * 32).decode()
K2 = "k2:" + base64.b64encode(b"2" * 32).decode()
K1_WRONG = "k1:" + base64.b64encode(b"x" * 32).decode()
MARKER = b"BSN-LIKE-999999990"

Stores = Callable[[str], AbstractAsyncContextManager[SqlAlchemyAuditStore]]


@pytest.fixture
def stores(database_url: str) -> Stores:
    @asynccontextmanager
    async def open_store(keys: str) -> AsyncIterator[SqlAlchemyAuditStore]:
        store = await create_audit_store(database_url, cipher=BodyCipher.from_setting(keys))
        try:
            yield store
        finally:
            await store.close()

    return open_store


async def _raw(database_url: str, message_id: str) -> tuple[bytes, str | None]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(bericht_bodies.c.body, bericht_bodies.c.key_id).where(
                        bericht_bodies.c.message_id == message_id
                    )
                )
            ).one()
    finally:
        await engine.dispose()
    return bytes(row[0]), row[1]


def _body(message_id: str) -> bytes:
    return b"<WMO301><Bsn>" + MARKER + b"</Bsn>" + message_id.encode() + b"</WMO301>"


async def _store_one(store: SqlAlchemyAuditStore) -> tuple[str, bytes]:
    b = nieuw()
    body = _body(b.message_id)
    b = nieuw(message_id=b.message_id, conversation_id=b.message_id, body=body, size=len(body))
    await store.store_received(b)
    return b.message_id, body


async def test_an_encrypted_body_is_unreadable_in_the_table_and_plain_through_the_store(
    stores: Stores, database_url: str
) -> None:
    async with stores(K1) as store:
        message_id, body = await _store_one(store)
        raw, key_id = await _raw(database_url, message_id)
        assert key_id == "k1"
        assert MARKER not in raw and message_id.encode() not in raw
        assert len(raw) == len(body) + 12 + 16  # nonce and tag
        assert await store.body(message_id) == body


async def test_without_keys_bodies_are_stored_as_sent_and_still_read(
    stores: Stores, database_url: str
) -> None:
    async with stores("") as store:
        message_id, body = await _store_one(store)
        assert await _raw(database_url, message_id) == (body, None)
        assert await store.body(message_id) == body
    async with stores(K1) as store:  # a key configured later reads the old plaintext bodies too
        assert await store.body(message_id) == body


async def test_rotation_re_encrypts_so_the_old_key_can_be_removed(stores: Stores, database_url: str) -> None:
    async with stores("") as store:
        plain_id, plain_body = await _store_one(store)
    async with stores(K1) as store:
        ids = [await _store_one(store) for _ in range(5)]
    async with stores(f"{K2},{K1}") as store:
        assert await store.body_key_counts() == {None: 1, "k1": 5}
        batches = []
        while (done := await store.rotate_bodies(batch=2)) > 0:
            batches.append(done)
        assert batches == [2, 2, 2]  # bounded batches, plaintext included
        assert await store.body_key_counts() == {"k2": 6}
    async with stores(K2) as store:  # k1 removed
        for message_id, body in [*ids, (plain_id, plain_body)]:
            assert await store.body(message_id) == body
            raw, key_id = await _raw(database_url, message_id)
            assert key_id == "k2" and MARKER not in raw


async def test_a_missing_or_wrong_key_is_a_clear_error_not_garbage(stores: Stores) -> None:
    async with stores(K1) as store:
        message_id, _ = await _store_one(store)
    async with stores(K2) as store:
        with pytest.raises(BodyUnreadable, match="key 'k1', which HUB_BODY_KEYS does not hold"):
            await store.body(message_id)
    async with stores(K1_WRONG) as store:
        with pytest.raises(BodyUnreadable, match="does not decrypt with key 'k1'"):
            await store.body(message_id)
    async with stores("") as store:
        with pytest.raises(BodyUnreadable):
            await store.body(message_id)


async def test_a_body_moved_to_another_message_does_not_decrypt(stores: Stores, database_url: str) -> None:
    async with stores(K1) as store:
        first, _ = await _store_one(store)
        second, _ = await _store_one(store)
    raw, _ = await _raw(database_url, first)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                bericht_bodies.update().where(bericht_bodies.c.message_id == second).values(body=raw)
            )
    finally:
        await engine.dispose()
    async with stores(K1) as store:
        with pytest.raises(BodyUnreadable, match="altered"):
            await store.body(second)


@pytest.mark.parametrize(
    "setting",
    ["k1", "k1:not base64!", "k1:" + base64.b64encode(b"short").decode(), f"{K1},{K1}", "bad id:AAAA"],
)
def test_unreadable_settings_are_refused(setting: str) -> None:
    with pytest.raises(BodyKeysInvalid) as caught:
        BodyCipher.from_setting(setting)
    assert base64.b64encode(b"1" * 32).decode() not in str(caught.value)  # never echoes a key


def test_hub_keys_rotate_and_status(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seed() -> list[str]:
        store = await create_audit_store(database_url, cipher=BodyCipher.from_setting(K1))
        try:
            return [(await _store_one(store))[0] for _ in range(3)]
        finally:
            await store.close()

    run_async(seed())
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    monkeypatch.setenv("HUB_BODY_KEYS", f"{K2},{K1}")
    assert main(["keys", "rotate", "--batch", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"re_encrypted": 3, "key": "k2", "not_under_key": {}}
    monkeypatch.setenv("HUB_BODY_KEYS", K2)
    assert main(["keys", "status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["bodies_by_key"] == {"k2": 3} and status["unreadable_keys"] == []
    monkeypatch.setenv("HUB_BODY_KEYS", "")
    assert main(["keys", "rotate"]) == 1
    assert "no key to rotate to" in capsys.readouterr().err
    assert main(["keys", "generate", "--id", "k3"]) == 0
    generated = capsys.readouterr().out.strip()
    assert BodyCipher.from_setting(generated).current == "k3"
