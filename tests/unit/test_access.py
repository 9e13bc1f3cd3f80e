"""Authorisation everywhere, audited refusals, and the limits, over the real app with fakes behind it.

The matrix test walks every route of the aiohttp router with every role: a route without an entry in
EXPECTED fails it, so a new endpoint cannot go without a decision on who may call it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hub.adapters.metrics import HubMetrics
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyKind, PartyRef
from hub.entrypoints.access import ACCESS
from hub.service.limits import RateLimiter
from hub.service.ports import BodyUnreadable
from hub.settings import Settings
from tests.support.app import fake_app, wmo301
from tests.support.berichten import example, with_header
from tests.support.fakes import FakeAuditStore

GEMEENTE_A = PartyRef(PartyKind.GEMEENTE, "0363")
GEMEENTE_B = PartyRef(PartyKind.GEMEENTE, "0599")
AANBIEDER = PartyRef(PartyKind.AANBIEDER, "12345678")
CAK = PartyRef(PartyKind.CAK, "CAK")
ADMIN_TOKEN = "admin-secret"
ROLES: dict[str, PartyRef | None] = {
    "none": None,
    "gemeente_a": GEMEENTE_A,
    "gemeente_b": GEMEENTE_B,
    "aanbieder": AANBIEDER,
    "cak": CAK,
    "admin": None,
}
EVERYONE = frozenset(ROLES)
PARTIES = frozenset({"gemeente_a", "gemeente_b", "aanbieder", "cak"})

# (method, route) -> the roles that get through (anything but 401, 403, 404). The message in the
# {message_id} routes was sent by gemeente A to the aanbieder; the POSTed message names gemeente A as
# its sender. HEAD mirrors GET.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/berichten"): frozenset({"gemeente_a"}),
    ("GET", "/v1/berichten/{message_id}"): frozenset({"gemeente_a", "aanbieder", "admin"}),
    ("POST", "/v1/admin/routes/reload"): frozenset({"admin"}),
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,  # counts only, no message data; restrict at the network (security.md)
    ("GET", "/v1/openapi.json"): EVERYONE,
    ("GET", "/v1/mailbox"): PARTIES,  # each its own mailbox (checked below)
    ("GET", "/v1/mailbox/{message_id}"): frozenset({"aanbieder"}),
    ("POST", "/v1/mailbox/{message_id}/ack"): frozenset({"aanbieder"}),
    ("GET", "/v1/admin/deadletters"): frozenset({"admin"}),
    ("POST", "/v1/admin/replay"): frozenset({"admin"}),
    ("GET", "/v1/admin/overdue"): frozenset({"admin"}),
}


_CODES = {401: {"unauthenticated"}, 403: {"forbidden", "afzender_mismatch"}, 404: {"not_found"}}


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    store: FakeAuditStore
    tokens: dict[PartyRef, str]

    def auth(self, role: str) -> dict[str, str]:
        headers = {"Content-Type": "application/xml"}
        if role == "admin":
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        elif (ref := ROLES[role]) is not None:
            headers["Authorization"] = f"Bearer {self.tokens[ref]}"
        return headers

    @property
    def address(self) -> tuple[str, int]:
        server = self.client.server
        assert server.port is not None
        return str(server.host), server.port


MakeRig = Callable[..., AbstractAsyncContextManager[Rig]]


@pytest.fixture
def make_rig() -> MakeRig:
    @asynccontextmanager
    async def build(**overrides: object) -> AsyncIterator[Rig]:
        settings = Settings(**{"max_body_bytes": 100_000, "admin_token": ADMIN_TOKEN, **overrides})  # type: ignore[arg-type]
        async with fake_app(settings, HubMetrics("gateway")) as f:
            parties = [ref for ref in ROLES.values() if ref is not None]
            tokens = {ref: await f.parties.create_token(ref, "t") for ref in parties}
            yield Rig(f.client, f.app, f.store, tokens)

    return build


@pytest.fixture
async def rig(make_rig: MakeRig) -> AsyncIterator[Rig]:
    async with make_rig() as r:
        yield r


async def _send(rig: Rig) -> str:
    r = await rig.client.post("/v1/berichten", data=wmo301(), headers=rig.auth("gemeente_a"))
    assert r.status == 202, await r.text()
    message_id: str = (await r.json())["message_id"]
    return message_id


async def test_every_endpoint_with_every_role(rig: Rig) -> None:
    message_id = await _send(rig)
    routes = {(r.method, r.resource.canonical) for r in rig.app.router.routes() if r.resource is not None}
    walked: set[tuple[str, str]] = set()
    for method, route in sorted(routes):
        key = ("GET" if method == "HEAD" else method, route)
        assert key in EXPECTED, f"{method} {route} has no entry in EXPECTED: decide who may call it"
        walked.add(key)
        path = route.replace("{message_id}", message_id)
        for role in ROLES:
            body: bytes | None = None
            if (method, route) == ("POST", "/v1/berichten"):
                body = wmo301()  # names gemeente A as its sender
            elif (method, route) == ("POST", "/v1/admin/replay"):
                body = json.dumps({"message_ids": [message_id]}).encode()
            rid = uuid.uuid4().hex
            headers = rig.auth(role) | {"X-Request-Id": rid}
            r = await rig.client.request(method, path, data=body, headers=headers)
            allowed = r.status not in (401, 403, 404)
            assert allowed == (role in EXPECTED[key]), (method, route, role, r.status, await r.text())
            if allowed:
                assert r.status < 500, (method, route, role, r.status, await r.text())
                continue
            refusals = [w for w in rig.store.refusals if w.request_id == rid]
            assert len(refusals) == 1, (method, route, role, r.status)
            w = refusals[0]
            assert w.code.value in _CODES[r.status], (method, route, role, w.code)
            assert (r.status == 401) is (role == "none")
            assert w.afzender == ROLES[role]  # the authenticated party (None: unknown, or the operator)
            if w.code is not ErrorCode.AFZENDER_MISMATCH:  # that one the intake records, by message
                assert w.path == f"{method} {path}"
    assert walked == set(EXPECTED), f"EXPECTED lists routes the app does not have: {set(EXPECTED) - walked}"


async def test_each_party_sees_only_its_own_mailbox_and_conversation(rig: Rig) -> None:
    message_id = await _send(rig)
    for role, sees in (("aanbieder", True), ("gemeente_a", False), ("gemeente_b", False), ("cak", False)):
        r = await rig.client.get("/v1/mailbox", headers=rig.auth(role))
        listed = {b["message_id"] for b in (await r.json())["berichten"]}
        assert (message_id in listed) is sees, role
    r = await rig.client.get(f"/v1/berichten/{message_id}", headers=rig.auth("aanbieder"))
    assert [b["message_id"] for b in (await r.json())["conversation"]["berichten"]] == [message_id]


async def test_refusals_are_audited_without_body_or_message_data(rig: Rig) -> None:
    message_id = await _send(rig)
    rig.store.refusals.clear()
    await rig.client.get(f"/v1/mailbox/{message_id}", headers=rig.auth("gemeente_b"))
    await rig.client.post("/v1/admin/replay", data=b'{"message_ids": []}', headers=rig.auth("cak"))
    await rig.client.get("/v1/mailbox", headers={"Authorization": "Bearer guessed"})
    codes = [(w.code.value, w.path, w.afzender) for w in rig.store.refusals]
    assert codes == [
        ("not_found", f"GET /v1/mailbox/{message_id}", GEMEENTE_B),
        ("forbidden", "POST /v1/admin/replay", CAK),
        ("unauthenticated", "GET /v1/mailbox", None),
    ]
    for w in rig.store.refusals:
        assert w.sha256 is None and w.size is None and "guessed" not in w.detail


async def test_bearer_tokens_can_be_switched_off(make_rig: MakeRig) -> None:
    for on in (True, False):
        async with make_rig(bearer_tokens=on) as rig:
            r = await rig.client.get("/v1/mailbox", headers=rig.auth("aanbieder"))
            assert r.status == (200 if on else 401)
            r = await rig.client.get("/v1/admin/overdue", headers=rig.auth("admin"))
            assert r.status == (200 if on else 401)
            if not on:
                assert "certificate" in (await r.json())["error"]["message"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_rate_limit_answers_429_with_retry_after_per_party(rig: Rig) -> None:
    clock = Clock()
    rig.app[ACCESS].rate = RateLimiter(0.5, 2, clock=clock)
    for _ in range(2):
        assert (await rig.client.get("/v1/mailbox", headers=rig.auth("aanbieder"))).status == 200
    r = await rig.client.get("/v1/mailbox", headers=rig.auth("aanbieder"))
    assert (r.status, (await r.json())["error"]["code"]) == (429, "rate_limited")
    assert r.headers["Retry-After"] == "2"  # one token at 0.5/s
    # Another party has its own bucket; the operator and unauthenticated calls have none.
    assert (await rig.client.get("/v1/mailbox", headers=rig.auth("gemeente_a"))).status == 200
    assert (await rig.client.get("/v1/admin/overdue", headers=rig.auth("admin"))).status == 200
    clock.now += 2.0
    assert (await rig.client.get("/v1/mailbox", headers=rig.auth("aanbieder"))).status == 200


# -- raw HTTP, to hold a request open while its body is still uploading --------------------------------


async def _open_post(rig: Rig, role: str, length: int | None, first: bytes) -> asyncio.StreamWriter:
    reader_writer = await asyncio.open_connection(*rig.address)
    writer = reader_writer[1]
    writer.transport.set_write_buffer_limits(0)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = (
        f"POST /v1/berichten HTTP/1.1\r\nHost: hub\r\nAuthorization: {rig.auth(role)['Authorization']}\r\n"
        f"Content-Type: application/xml\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + first)
    await writer.drain()
    _READERS[writer] = reader_writer[0]
    return writer


_READERS: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}


async def _answer(writer: asyncio.StreamWriter) -> tuple[int, dict[str, str], bytes]:
    """The answer, read by its Content-Length: the hub may answer before the body is all sent."""
    reader = _READERS.pop(writer)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode().strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    body = await asyncio.wait_for(reader.readexactly(int(headers["Content-Length"])), 10)
    writer.close()
    return int(lines[0].split()[1]), headers, body


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_concurrency_limit_per_party(make_rig: MakeRig) -> None:
    async with make_rig(max_concurrent_per_party=1) as rig:
        body = wmo301()
        held = await _open_post(rig, "gemeente_a", len(body), body[:100])
        await _until(lambda: rig.app[ACCESS].concurrency.in_flight(GEMEENTE_A) == 1)
        r = await rig.client.get("/v1/mailbox", headers=rig.auth("gemeente_a"))
        assert (r.status, (await r.json())["error"]["code"]) == (429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert (await rig.client.get("/v1/mailbox", headers=rig.auth("aanbieder"))).status == 200
        held.write(body[100:])
        status, _, answer = await _answer(held)
        assert status == 202, answer
        assert rig.app[ACCESS].concurrency.in_flight(GEMEENTE_A) == 0
        assert (await rig.client.get("/v1/mailbox", headers=rig.auth("gemeente_a"))).status == 200


async def test_request_bytes_in_flight_are_capped_before_bodies_are_read(
    make_rig: MakeRig,
) -> None:
    first, second = wmo301(), wmo301("0599")
    cap = len(first) + len(second) - 1  # both at once do not fit
    async with make_rig(max_inflight_bytes=cap) as rig:
        budget = rig.app[ACCESS].budget
        held = await _open_post(rig, "gemeente_a", len(first), first[:100])
        await _until(lambda: budget.in_use == len(first))
        # A declared length that does not fit: 503 at once, without sending a byte of the body.
        refused = await _open_post(rig, "gemeente_b", len(second), b"")
        status, headers, answer = await _answer(refused)
        assert status == 503 and json.loads(answer)["error"]["code"] == "unavailable", answer
        assert int(headers["Retry-After"]) >= 1
        # A chunked body is counted as it arrives.
        chunked = await _open_post(rig, "gemeente_b", None, b"")
        chunked.write(f"{len(second):x}\r\n".encode() + second + b"\r\n0\r\n\r\n")
        status, _, answer = await _answer(chunked)
        assert status == 503, answer
        # The first one finishes; then the second fits.
        held.write(first[100:])
        status, _, answer = await _answer(held)
        assert status == 202, answer
        assert budget.in_use == 0 and budget.peak <= cap
        r = await rig.client.post("/v1/berichten", data=second, headers=rig.auth("gemeente_b"))
        assert r.status == 202, await r.text()
        assert budget.in_use == 0


async def test_every_way_out_of_a_body_read_gives_its_bytes_back(make_rig: MakeRig) -> None:
    """Refused, over the cap, or abandoned mid-body: the in-flight budget returns to zero each time.

    A leak here would be a denial of service for everyone: a few such requests and the gateway
    answers 503 to all senders until it is restarted.
    """
    body = wmo301()
    async with make_rig(max_inflight_bytes=len(body) * 3) as rig:
        budget = rig.app[ACCESS].budget
        for _ in range(4):  # more than the cap holds, if any of them leaked
            # A chunked body that grows past HUB_MAX_BODY_BYTES (100,000 here): 413.
            big = await _open_post(rig, "gemeente_a", None, b"")
            chunk = b"<" * 60_000
            big.write((f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 2)
            status, _, answer = await _answer(big)
            assert status == 413, answer
            # A chunked body that outgrows the in-flight cap: 503.
            over = await _open_post(rig, "gemeente_b", None, b"")
            chunk = body * 2
            over.write((f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") * 2)
            status, _, answer = await _answer(over)
            assert status == 503, answer
            # A sender that declares a length, sends part of it and goes away.
            gone = await _open_post(rig, "gemeente_a", len(body), body[:100])
            await _until(lambda: budget.in_use == len(body))
            gone.close()
            _READERS.pop(gone)
            await _until(lambda: budget.in_use == 0)
        r = await rig.client.post("/v1/berichten", data=body, headers=rig.auth("gemeente_a"))
        assert r.status == 202, await r.text()
        assert budget.in_use == 0


async def test_a_body_whose_key_is_missing_is_503_for_the_receiver_not_garbage(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = await _send(rig)

    async def unreadable(message_id: str) -> bytes | None:
        raise BodyUnreadable(f"the body of {message_id} is encrypted with key 'k1', which ... does not hold")

    monkeypatch.setattr(rig.store, "body", unreadable)
    r = await rig.client.get(f"/v1/mailbox/{message_id}", headers=rig.auth("aanbieder"))
    assert (r.status, (await r.json())["error"]["code"]) == (503, "unavailable")
    assert "Retry-After" in r.headers


async def test_a_party_sending_on_behalf_of_another_may_follow_what_it_sent() -> None:
    # routing_rules/sends_for.csv: aanbieder 11223344 (a software supplier) sends for 12345678.
    supplier, other = PartyRef(PartyKind.AANBIEDER, "11223344"), PartyRef(PartyKind.AANBIEDER, "87654321")
    settings = Settings(max_body_bytes=100_000, admin_token=ADMIN_TOKEN)
    async with fake_app(settings) as f:
        token = {ref: await f.parties.create_token(ref, "t") for ref in (supplier, other, AANBIEDER)}
        body = with_header(
            example("iwmo-3.2", "WMO315"), afzender="12345678", ontvanger="0363", identificatie="SF-1"
        )
        headers = {"Content-Type": "application/xml", "Authorization": f"Bearer {token[supplier]}"}
        r = await f.client.post("/v1/berichten", data=body, headers=headers)
        assert r.status == 202, await r.text()
        status_url = (await r.json())["status_url"]
        seen = await f.client.get(status_url, headers=headers)
        assert seen.status == 200, await seen.text()
        received = next(e for e in (await seen.json())["events"] if e["event"] == "received")
        assert received["detail"]["submitted_by"] == "aanbieder:11223344"
        # The afzender itself sees it too; a party that is neither gets the same 404 as for nothing.
        own = await f.client.get(status_url, headers={"Authorization": f"Bearer {token[AANBIEDER]}"})
        assert own.status == 200
        stranger = await f.client.get(status_url, headers={"Authorization": f"Bearer {token[other]}"})
        assert stranger.status == 404
