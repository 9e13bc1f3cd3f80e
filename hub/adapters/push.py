"""Push delivery over HTTP(S): POST the message to the receiver's endpoint, bounded in time."""

from __future__ import annotations

import asyncio

import aiohttp

from hub.service.delivery import PushResult

MAX_ANSWER_BYTES = 64 * 1024  # of a receiver's answer body: the hub only needs its status


class HttpPusher:
    def __init__(
        self, *, connect_timeout: float = 5.0, total_timeout: float = 30.0, limit_per_host: int = 8
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # No overall cap: the per-host limit bounds each receiver, and a few hanging receivers must not
        # take the connections of the others.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._limit_per_host)
        self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def push(self, endpoint: str, body: bytes, headers: dict[str, str]) -> PushResult:
        assert self._session is not None, "HttpPusher.start() first"
        try:
            # No redirects: the endpoint is configured data; a redirect is a receiver misconfiguration.
            async with self._session.post(endpoint, data=body, headers=headers, allow_redirects=False) as r:
                # Drain a small answer so the connection can be reused; a receiver that answers with
                # megabytes is not read to the end (the connection is dropped instead).
                drained = 0
                async for chunk in r.content.iter_chunked(16 * 1024):
                    drained += len(chunk)
                    if drained > MAX_ANSWER_BYTES:
                        r.close()
                        break
                return PushResult(r.status)
        except TimeoutError:
            return PushResult(None, "timeout")
        except aiohttp.ClientConnectorError as exc:
            return PushResult(None, f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}")
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            return PushResult(None, f"{type(exc).__name__}")
