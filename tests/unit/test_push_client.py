"""The push client against a local aiohttp receiver: status, bounded answers, timeouts, no redirects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.adapters.push import HttpPusher


@pytest.fixture
async def receiver() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, text="thanks")

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        for _ in range(2000):  # 64 MB if anyone read it all
            await response.write(b"x" * 32 * 1024)
        return response

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=200)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/huge", huge)
    app.router.add_post("/hang", hang)
    app.router.add_post("/moved", moved)
    server = TestServer(app)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_push_reports_the_receivers_status_and_bounds_what_it_reads(receiver: str) -> None:
    pusher = HttpPusher(total_timeout=0.5)
    await pusher.start()
    try:
        assert (await pusher.push(f"{receiver}/ok", b"<x/>", {})).status == 202
        # A receiver that answers with megabytes: the status counts, the rest is not read.
        assert (await pusher.push(f"{receiver}/huge", b"<x/>", {})).status == 200
        assert (await pusher.push(f"{receiver}/ok", b"<x/>", {})).status == 202  # still usable
        hung = await pusher.push(f"{receiver}/hang", b"<x/>", {})
        assert (hung.status, hung.error) == (None, "timeout")
        assert (await pusher.push(f"{receiver}/moved", b"<x/>", {})).status == 302  # not followed
    finally:
        await pusher.close()
