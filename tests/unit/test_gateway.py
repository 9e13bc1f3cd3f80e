"""The HTTP gateway over fakes (no servers): status codes, error bodies, auth and visibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.domain.parties import PartyKind, PartyRef
from hub.settings import Settings
from tests.support.app import fake_app, wmo301
from tests.support.fakes import FakeAuditStore, FakePartyStore, FakePublisher

GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
OTHER = PartyRef(PartyKind.GEMEENTE, "0599")
ADMIN_TOKEN = "admin-secret"


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    store: FakeAuditStore
    publisher: FakePublisher
    parties: FakePartyStore
    tokens: dict[PartyRef, str]

    def auth(self, ref: PartyRef | None) -> dict[str, str]:
        headers = {"Content-Type": "application/xml"}
        if ref is not None:
            headers["Authorization"] = f"Bearer {self.tokens[ref]}"
        return headers


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    settings = Settings(max_body_bytes=100_000, admin_token=ADMIN_TOKEN)
    async with fake_app(settings) as f:
        tokens = {ref: await f.parties.create_token(ref, "test") for ref in (GEMEENTE, AANBIEDER, OTHER)}
        yield Rig(f.client, f.store, f.publisher, f.parties, tokens)


async def test_accepted_answer_has_the_documented_fields(rig: Rig) -> None:
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=rig.auth(GEMEENTE))
    body = await r.json()
    assert r.status == 202, body
    assert set(body) >= {
        "message_id",
        "standard",
        "message",
        "afzender",
        "ontvanger",
        "receiver",
        "status_url",
    }
    assert (body["standard"], body["message"], body["receiver"]) == ("iWmo", "WMO301", "aanbieder:12345678")
    assert r.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "application/xml"}, 401, "unauthenticated"),
        ({"Content-Type": "application/xml", "Authorization": "Bearer nope"}, 401, "unauthenticated"),
        ({"Content-Type": "application/xml", "Authorization": "Basic dXNlcjpwdw=="}, 401, "unauthenticated"),
        ({"Content-Type": "application/xml", "Authorization": f"Bearer {ADMIN_TOKEN}"}, 403, "forbidden"),
    ],
)
async def test_authentication_failures(rig: Rig, headers: dict[str, str], status: int, code: str) -> None:
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=headers)
    body = await r.json()
    assert (r.status, body["error"]["code"]) == (status, code)
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert not rig.publisher.published


async def test_wrong_content_type_and_too_large_are_refused_before_parsing(rig: Rig) -> None:
    r = await rig.client.post(
        "/v1/berichten", data=wmo301(), headers=rig.auth(GEMEENTE) | {"Content-Type": "text/plain"}
    )
    assert (r.status, (await r.json())["error"]["code"]) == (415, "unsupported_media_type")
    r = await rig.client.post(
        "/v1/berichten", data=b"<a>" + b"x" * 200_000 + b"</a>", headers=rig.auth(GEMEENTE)
    )
    assert (r.status, (await r.json())["error"]["code"]) == (413, "too_large")


async def test_chunked_body_over_the_limit_is_413_too(rig: Rig) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x" * 10_000

    r = await rig.client.post("/v1/berichten", data=chunks(), headers=rig.auth(GEMEENTE))
    assert (r.status, (await r.json())["error"]["code"]) == (413, "too_large")


async def test_schema_errors_come_with_line_path_and_reason_and_no_bsn(rig: Rig) -> None:
    body = wmo301().replace(b"2026-01-05", b"2026-02-30", 1)
    r = await rig.client.post("/v1/berichten", data=body, headers=rig.auth(GEMEENTE))
    answer = await r.json()
    assert (r.status, answer["error"]["code"]) == (422, "schema_invalid")
    assert answer["error"]["errors"][0]["line"] and answer["error"]["errors"][0]["path"]
    assert b"2026-02-30" not in (await r.read())


async def test_broker_down_is_503_with_retry_after(rig: Rig) -> None:
    rig.publisher.down = True
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=rig.auth(GEMEENTE))
    assert (r.status, (await r.json())["error"]["code"]) == (503, "unavailable")
    assert int(r.headers["Retry-After"]) > 0


async def test_database_down_during_auth_is_503(rig: Rig) -> None:
    rig.parties.down = True
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=rig.auth(GEMEENTE))
    assert r.status == 503


async def test_status_is_visible_to_sender_and_receiver_only(rig: Rig) -> None:
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=rig.auth(GEMEENTE))
    url = (await r.json())["status_url"]
    assert (await rig.client.get(url, headers=rig.auth(GEMEENTE))).status == 200
    assert (await rig.client.get(url, headers=rig.auth(AANBIEDER))).status == 200
    assert (await rig.client.get(url, headers=rig.auth(OTHER))).status == 404
    assert (await rig.client.get(url, headers=rig.auth(None))).status == 401
    assert (await rig.client.get("/v1/berichten/not-a-uuid", headers=rig.auth(GEMEENTE))).status == 404


async def test_unknown_paths_and_methods_answer_json(rig: Rig) -> None:
    r = await rig.client.get("/nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await rig.client.get("/v1/berichten")
    assert r.status == 405 and "error" in await r.json()


async def test_health_and_readiness(rig: Rig) -> None:
    assert (await rig.client.get("/healthz")).status == 200
    r = await rig.client.get("/readyz")
    assert r.status == 200, await r.json()
    rig.publisher.down = True
    r = await rig.client.get("/readyz")
    assert r.status == 503 and (await r.json())["checks"]["rabbitmq"].startswith("unavailable")
