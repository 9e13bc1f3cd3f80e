"""HTTP abuse against the real `hub serve` over a raw socket: slow bodies and headers (slowloris),
oversized headers, Content-Length lies and chunked garbage. The hub answers each within a bound (or
closes the connection), never hangs, and keeps serving others. HUB_BODY_READ_TIMEOUT is 2 s here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from tests.support.app import wmo301
from tests.support.hubproc import HubProcess, delete_topology, prepare_hub

pytestmark = [pytest.mark.rabbitmq]

READ_TIMEOUT = 2.0
BOUND = READ_TIMEOUT + 3.0  # every answer (or close) comes within this
BSN = "123456782"  # in the bodies that are cut: it must not reach the hub's log

Answer = tuple[float, int | None, dict[str, str], bytes]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    tmp = tmp_path_factory.mktemp("abuse")
    h = prepare_hub(
        f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}",
        tmp,
        {"gemeente": "0363"},
        HUB_BODY_READ_TIMEOUT=str(READ_TIMEOUT),
    )
    h.start()
    try:
        yield h
    finally:
        h.stop()
        asyncio.run(delete_topology(h))


def _head(hub: HubProcess, *extra: str) -> bytes:
    lines = [
        "POST /v1/berichten HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/xml",
        f"Authorization: Bearer {hub.tokens['gemeente']}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _body() -> bytes:
    body, n = re.subn(rb"<wmo301:Bsn>\d+</wmo301:Bsn>", f"<wmo301:Bsn>{BSN}</wmo301:Bsn>".encode(), wmo301())
    assert n >= 1
    return body


async def _exchange(port: int, *parts: bytes, pause: float = 0.0, write_eof: bool = False) -> Answer:
    """Send the parts (pausing between them) while reading one answer, until the bound.

    Returns (seconds until the answer or close, status or None when closed without one, headers, body).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def answer() -> Answer:
        status_line = await reader.readline()
        if not status_line:
            return time.monotonic() - started, None, {}, b""
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return time.monotonic() - started, int(status_line.split()[1]), headers, body

    reading = asyncio.create_task(answer())
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.wait({reading}, timeout=pause)
            if reading.done():
                break  # answered (or closed) before the sender finished: stop sending
            writer.write(part)
            await writer.drain()
        if write_eof and not reading.done():
            writer.write_eof()
        return await asyncio.wait_for(reading, BOUND)
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        return time.monotonic() - started, None, {}, b""
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()


def _code(body: bytes) -> str:
    code: str = json.loads(body)["error"]["code"]
    return code


def run(coro: Coroutine[Any, Any, Answer]) -> Answer:
    return asyncio.run(coro)


def test_a_body_that_stops_half_way_is_408_after_the_read_timeout(hub: HubProcess) -> None:
    body = _body()
    took, status, headers, answer = run(
        _exchange(hub.port, _head(hub, f"Content-Length: {len(body)}") + body[: len(body) // 2])
    )
    assert status == 408 and _code(answer) == "request_timeout", answer
    assert READ_TIMEOUT - 0.2 <= took < BOUND
    assert headers.get("connection", "").lower() == "close"


def test_a_trickled_body_is_cut_off_by_the_same_bound(hub: HubProcess) -> None:
    body = _body()
    head = _head(hub, f"Content-Length: {len(body)}")
    trickle = [body[i : i + 20] for i in range(0, 20 * 30, 20)]  # 20 bytes every 0.2 s: 6 s for these
    took, status, _, answer = run(_exchange(hub.port, head, *trickle, pause=0.2))
    assert status == 408 and _code(answer) == "request_timeout", answer
    assert took < BOUND


def test_slow_headers_are_closed_without_an_answer(hub: HubProcess) -> None:
    head = _head(hub, "Content-Length: 10")
    took, status, _, _ = run(_exchange(hub.port, head[:40]))
    assert status is None, "closed, nothing to answer"
    assert READ_TIMEOUT - 0.2 <= took < BOUND


def test_content_length_longer_than_the_body_then_eof_is_not_a_hang(hub: HubProcess) -> None:
    body = _body()
    took, status, _, _ = run(
        _exchange(hub.port, _head(hub, f"Content-Length: {len(body) + 500}") + body, write_eof=True)
    )
    assert status in (None, 400, 408), status
    assert took < BOUND


def test_content_length_shorter_than_the_body_cuts_it(hub: HubProcess) -> None:
    body = _body()
    cut = len(body) - 60
    took, status, _, answer = run(_exchange(hub.port, _head(hub, f"Content-Length: {cut}") + body[:cut]))
    assert status == 400 and _code(answer) == "not_well_formed", answer
    # The rest arriving afterwards is a broken request of its own: a 400 or a close, at once.
    took, status, _, _ = run(
        _exchange(hub.port, _head(hub, f"Content-Length: {cut}") + body[:cut] + body[cut:])
    )
    assert status in (None, 400) and took < BOUND


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("one huge header", ["X-Big: " + "a" * 20_000, "Content-Length: 0"]),
        ("too many headers", [*(f"X-H{i}: a" for i in range(300)), "Content-Length: 0"]),
        ("negative length", ["Content-Length: -5"]),
        ("length and chunked", ["Content-Length: 5", "Transfer-Encoding: chunked"]),
    ],
)
def test_oversized_and_contradictory_headers_are_400(hub: HubProcess, name: str, extra: list[str]) -> None:
    took, status, _, _ = run(_exchange(hub.port, _head(hub, *extra) + b"0\r\n\r\n"))
    assert status in (400, 431), (name, status)
    assert took < BOUND  # an answer, not a hang (no speed is asserted)


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"FFFFFFFFFFFFFFFFFF\r\nabc\r\n", b"5\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef"],
)
def test_chunked_garbage_is_refused_or_closed(hub: HubProcess, chunks: bytes) -> None:
    took, status, _, answer = run(_exchange(hub.port, _head(hub, "Transfer-Encoding: chunked") + chunks))
    assert status in (None, 400, 408), (status, answer)
    assert took < BOUND


def test_a_valid_chunked_message_is_accepted_and_the_hub_still_serves(hub: HubProcess) -> None:
    body = wmo301()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:100], body[100:])) + b"0\r\n\r\n"
    took, status, _, answer = run(_exchange(hub.port, _head(hub, "Transfer-Encoding: chunked") + chunked))
    assert status == 202, answer
    took, status, _, answer = run(_exchange(hub.port, _head(hub, f"Content-Length: {len(body)}") + body))
    assert status == 200 and json.loads(answer)["duplicate"] is True  # the same message again
    assert took < BOUND  # an answer, not a hang (no speed is asserted)


def test_the_bodies_cut_short_left_nothing_of_theirs_in_the_log(hub: HubProcess) -> None:
    # Runs after the tests above (file order): the cut bodies carried the BSN.
    time.sleep(0.2)
    assert BSN not in hub.log_tail(10_000_000)
