"""A real HTTP receiver for push-delivery tests: records what arrives, answers as the test says."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.hubproc import free_port

# Given the message id and how often it arrived before, the status to answer.
Behaviour = Callable[[str, int], int]


def always(status: int) -> Behaviour:
    return lambda _mid, _seen: status


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    behaviour: Behaviour = field(default_factory=lambda: always(200))
    arrivals: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: collections.Counter[str] = field(default_factory=collections.Counter)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # While cleared, every request hangs before it is answered (a receiver that stopped responding).
    responding: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0  # requests hanging right now
    _runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox"

    async def _inbox(self, request: web.Request) -> web.Response:
        mid = request.headers.get("X-Message-Id", "")
        await request.read()
        self.waiting += 1
        try:
            await self.responding.wait()
        finally:
            self.waiting -= 1
        seen = self.arrivals[mid]
        self.arrivals[mid] += 1
        self.headers[mid] = dict(request.headers)
        status = self.behaviour(mid, seen)
        if 200 <= status < 300:
            self.accepted[mid] += 1
        return web.Response(status=status)

    async def start(self, *, responding: bool = True) -> None:
        if responding:
            self.responding.set()
        app = web.Application()
        app.router.add_post("/inbox", self._inbox)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, n: int, within: float = 30.0) -> bool:
        """Until `n` distinct messages were accepted (bounded)."""
        for _ in range(int(within * 10)):
            if len(self.accepted) >= n:
                return True
            await asyncio.sleep(0.1)
        return False
