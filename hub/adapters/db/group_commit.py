"""Group commit: many concurrent writers, one transaction per batch, durable before anyone returns.

A commit costs ~1 ms of client CPU on this machine whatever it holds, while a row inside a batch
costs ~0.03 ms (perf-limits.md). So callers hand their writes to one background task that takes
whatever has queued, writes it in one transaction and only then resolves each caller's future.
There is no timer: at low load a batch is the one waiting item and goes out at once; under load the
batch is whatever queued while the previous commit ran.

The writer can run on a thread of its own, with its own event loop and its own engine (`thread=True`).
A batch takes five to eight round trips (BEGIN, the statements, COMMIT); on the gateway's loop, busy
with 64 requests, each of them waited for a whole turn of that loop, so a batch of 30 took ~37 ms
and every request waited for two of them. On its own loop a round trip waits only for the GIL,
which the gateway's thread gives up at every socket call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.adapters.db.engine import is_unavailable
from hub.service.ports import StoreUnavailable

logger = logging.getLogger(__name__)

Op = TypeVar("Op")

# Writes all ops of a batch on the connection (inside the caller's transaction). Returns, per op,
# None or the exception that op's caller should get while the others still commit.
ApplyBatch = Callable[[AsyncConnection, Sequence[Op]], Awaitable[list[BaseException | None]]]
# Turns the error of an op that failed on its own into the exception for its caller
# (e.g. a unique violation into IdentityConflict with the existing row).
ExplainFailure = Callable[[Op, Exception], Awaitable[BaseException]]


_RETRIES = 3


class _Closed:
    pass


_CLOSE = _Closed()


class _Unexplained(Exception):
    """An op failed alone; its caller turns `error` into its own exception (ExplainFailure) on the
    caller's loop, so the explaining read neither holds up the writer nor crosses event loops."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class GroupCommitWriter(Generic[Op]):
    def __init__(
        self,
        engine: AsyncEngine | Callable[[], AsyncEngine],
        apply: ApplyBatch[Op],
        explain: ExplainFailure[Op],
        *,
        max_batch: int = 200,
        timeout: float = 10.0,
        retryable: Callable[[Op, Exception], bool] = lambda _op, _exc: False,
        thread: bool = False,
    ) -> None:
        """`engine`: the engine, or with `thread=True` a factory called on the writer's thread (its
        connections belong to that thread's loop, so the engine must be the writer's alone)."""
        self._engine_or_factory = engine
        self._engine: AsyncEngine | None = None if thread else engine  # type: ignore[assignment]
        self._threaded = thread
        self._retryable = retryable
        self._apply = apply
        self._explain = explain
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[None]] | _Closed] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the writer runs on
        self._task: asyncio.Task[None] | None = None
        self._done: concurrent.futures.Future[None] | None = None  # the thread's end
        self._closing = False
        self.batches = 0  # batches committed: lets tests and the bench see that grouping happens

    def start(self) -> None:
        if self._task is not None or self._done is not None:
            return
        if not self._threaded:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="audit-group-commit")
            return
        ready = threading.Event()
        self._done = concurrent.futures.Future()
        thread = threading.Thread(target=self._thread_main, args=(ready,), name="audit-group-commit")
        thread.daemon = True  # close() ends it; a process that exits without close() must not hang
        thread.start()
        ready.wait()

    def _thread_main(self, ready: threading.Event) -> None:
        assert self._done is not None
        loop = asyncio.new_event_loop()

        async def main() -> None:
            assert callable(self._engine_or_factory) and not isinstance(self._engine_or_factory, AsyncEngine)
            self._engine = self._engine_or_factory()
            self._queue = asyncio.Queue()
            self._loop = asyncio.get_running_loop()
            ready.set()
            try:
                await self._run()
            finally:
                await self._engine.dispose()

        try:
            loop.run_until_complete(main())
            self._done.set_result(None)
        except BaseException as exc:  # pragma: no cover - the writer itself never raises
            self._done.set_exception(exc)
        finally:
            ready.set()
            loop.close()

    def _put(self, item: tuple[Op, asyncio.Future[None]] | _Closed) -> None:
        assert self._queue is not None and self._loop is not None
        if self._threaded:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        else:
            self._queue.put_nowait(item)

    async def submit(self, op: Op) -> None:
        """Queue one write; return when its batch is committed. Raises its own error or StoreUnavailable."""
        if self._closing or self._loop is None:
            raise StoreUnavailable("the audit store is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((op, future))
        try:
            # shield: a caller that gives up (or is cancelled) must not cancel the shared batch;
            # its write may still commit, exactly as when a response is lost on the wire.
            # The writer bounds each batch by `timeout`; the extra margin covers the queue ahead.
            await asyncio.wait_for(asyncio.shield(future), timeout=self._timeout * 2)
        except TimeoutError:
            raise StoreUnavailable("the audit store did not commit in time") from None
        except _Unexplained as failed:
            raise await self._explain_safely(op, failed.error) from None

    async def close(self) -> None:
        """Write what is queued, then stop the writer (and, on its own thread, dispose its engine)."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        self._put(_CLOSE)
        if self._task is not None:
            await self._task
        if self._done is not None:
            await asyncio.wrap_future(self._done)

    async def _run(self) -> None:
        assert self._queue is not None
        closing = False
        while not closing:
            first = await self._queue.get()
            if isinstance(first, _Closed):
                break
            # Let every task that is ready to run queue its write first: no sleep, no added latency.
            await asyncio.sleep(0)
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if isinstance(item, _Closed):
                    closing = True
                    break
                batch.append(item)
            try:
                await self._write(batch)
            except Exception as exc:  # the writer must outlive any single batch
                logger.exception("group commit: unexpected failure")
                self._settle([(f, StoreUnavailable(f"audit store failure: {exc!r}")) for _, f in batch])

    async def _write(self, batch: list[tuple[Op, asyncio.Future[None]]], attempt: int = 0) -> bool:
        """Write and settle the batch; False when the database turned out to be unreachable."""
        assert self._engine is not None
        ops = [op for op, _ in batch]
        try:
            async with asyncio.timeout(self._timeout), self._engine.begin() as conn:
                outcomes = await self._apply(conn, ops)
        except Exception as exc:
            if is_unavailable(exc):
                if attempt == 0:
                    # Often one dead pooled connection (the server restarted or killed it a moment
                    # ago): the pool has dropped it; one more go on a fresh connection settles it.
                    return await self._write(batch, attempt + 1)
                logger.warning("group commit: database unavailable (%s items): %s", len(batch), exc)
                self._settle([(f, StoreUnavailable(f"database unavailable: {exc}")) for _, f in batch])
                return False
            if len(batch) == 1:
                # A race another process can win (say, the next event number of the same message)
                # is worth another go with fresh reads; anything else is this op's own error.
                if attempt < _RETRIES and self._retryable(ops[0], exc):
                    return await self._write(batch, attempt + 1)
                self._settle([(batch[0][1], _Unexplained(exc))])
                return True
            # One bad item (a unique violation, most likely) spoils the transaction for all:
            # write them one by one so only the guilty one fails.
            for i, item in enumerate(batch):
                if not await self._write([item]):
                    # Gone half-way: fail the rest now instead of timing out on each in turn.
                    self._settle([(f, StoreUnavailable("database unavailable")) for _, f in batch[i + 1 :]])
                    return False
            return True
        self.batches += 1
        self._settle([(future, outcome) for (_, future), outcome in zip(batch, outcomes, strict=True)])
        return True

    def _settle(self, settled: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
        """Resolve the callers' futures, on their loop: one hop from the writer's thread per batch."""
        if not settled:
            return
        loop = settled[0][0].get_loop()
        if loop is asyncio.get_running_loop():
            _settle_all(settled)
        else:
            loop.call_soon_threadsafe(_settle_all, settled)

    async def _explain_safely(self, op: Op, exc: Exception) -> BaseException:
        try:
            return await self._explain(op, exc)
        except Exception as explain_exc:
            if is_unavailable(explain_exc):
                return StoreUnavailable(str(explain_exc))
            return exc


def _settle_all(settled: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if outcome is None:
        future.set_result(None)
        return
    future.set_exception(outcome)
    # The caller may have stopped waiting (timeout): mark the exception retrieved so asyncio does
    # not log "exception was never retrieved"; a caller still waiting gets it all the same.
    future.exception()
