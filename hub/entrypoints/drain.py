"""Graceful shutdown of the gateway: stop accepting, let the requests in flight finish, then close.

aiohttp's own run_app stops reading from connections as soon as it shuts down, so a request whose
body is still being uploaded would be cut off; `serve` instead closes the listening socket first,
waits (up to the shutdown timeout) until no request is in flight, and only then cleans up. While
draining, every answer carries `Connection: close`, so keep-alive clients do not send more.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from hub.entrypoints.heap import freeze_startup_heap
from hub.entrypoints.logs import fields

log = logging.getLogger("hub")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """Counts the requests being handled; `idle()` waits until there are none."""

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.count += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.draining:
                response.force_close()
            return response
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def idle(self, seconds: float) -> bool:
        """True when no request is in flight any more, False when the timeout came first."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True


async def serve(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
    header_timeout: float = 75.0,
) -> None:
    """Serve until SIGTERM or SIGINT, then drain and clean up (the app's cleanup context runs last).

    `header_timeout`: aiohttp's keep-alive timeout, which also closes a new connection that has not
    sent complete request headers by then (a slowloris on the headers).
    """
    inflight = InFlight()
    app.middlewares.insert(0, inflight.middleware)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=header_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        frozen = freeze_startup_heap()
        log.debug("froze %d start-up objects out of the garbage collector's reach", frozen)
        if ssl_context is None:
            log.info("listening on http://%s:%d", host, port)
        else:
            log.info("listening on https://%s:%d (client certificates required)", host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        inflight.draining = True
        await site.stop()  # no new connections
        log.info(
            "shutting down: finishing requests in flight",
            extra=fields(event="draining", in_flight=inflight.count),
        )
        if not await inflight.idle(shutdown_timeout):
            log.warning(
                "shutdown timeout: cancelling requests still in flight",
                extra=fields(event="drain_timeout", in_flight=inflight.count),
            )
    finally:
        await runner.cleanup()
    log.info("stopped", extra=fields(event="stopped"))
