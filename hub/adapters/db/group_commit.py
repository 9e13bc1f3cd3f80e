"""Group commit: many concurrent writers, one transaction per batch, durable before anyone returns.

A commit costs ~1 ms of client CPU on this machine whatever it holds, while a row inside a batch
costs ~0.03 ms (perf-limits.md). So callers hand their writes to one background task that takes
whatever has queued, writes it in one transaction and only then resolves each caller's future.
There is no timer: at low load a batch is the one waiting item and goes out at once; under load the
batch is whatever queued while the previous commit ran.
"""

from __future__ import annotations

import asyncio
import logging
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
    """An op failed alone; its caller turns `error` into its own exception (ExplainFailure), so the
    explaining read (a look-up of the stored identity) does not hold up the writer and the next batch."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class GroupCommitWriter(Generic[Op]):
    def __init__(
        self,
        engine: AsyncEngine,
        apply: ApplyBatch[Op],
        explain: ExplainFailure[Op],
        *,
        max_batch: int = 200,
        timeout: float = 10.0,
        retryable: Callable[[Op, Exception], bool] = lambda _op, _exc: False,
    ) -> None:
        self._engine = engine
        self._retryable = retryable
        self._apply = apply
        self._explain = explain
        self._max_batch = max_batch
        self._timeout = timeout
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[None]] | _Closed] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0  # batches committed: lets tests and the bench see that grouping happens

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-group-commit")

    def _enqueue(self, op: Op) -> asyncio.Future[None]:
        if self._closing or self._task is None:
            raise StoreUnavailable("the audit store is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def submit_all(self, ops: Sequence[Op]) -> list[BaseException | None]:
        """Queue several writes at once, in this order (so in one batch, unless it is full); return
        when they are committed, with each one's error or None. Raises StoreUnavailable when the
        store is closed or the batch does not commit in time. One caller's two writes cost no task
        each, as asyncio.gather of two submit() calls would. submit() is this for one write."""
        futures = [self._enqueue(op) for op in ops]
        outcomes: list[BaseException | None] = []
        try:
            # shield: a caller that gives up (or is cancelled) must not cancel the shared batch;
            # its write may still commit, exactly as when a response is lost on the wire.
            # The writer bounds each batch by `timeout`; the extra margin covers the queue ahead.
            async with asyncio.timeout(self._timeout * 2):
                for op, future in zip(ops, futures, strict=True):
                    try:
                        await asyncio.shield(future)
                        outcomes.append(None)
                    except _Unexplained as failed:
                        outcomes.append(await self._explain_safely(op, failed.error))
                    except Exception as exc:  # this op's own error (say, NotInState), or StoreUnavailable
                        outcomes.append(exc)
        except TimeoutError:
            raise StoreUnavailable("the audit store did not commit in time") from None
        return outcomes

    async def submit(self, op: Op) -> None:
        """Queue one write; return when its batch is committed. Raises its own error or StoreUnavailable."""
        (outcome,) = await self.submit_all([op])
        if outcome is not None:
            raise outcome

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._task is None or self._closing:
            return
        self._closing = True
        self._queue.put_nowait(_CLOSE)
        await self._task

    async def _run(self) -> None:
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
                for _, future in batch:
                    _settle(future, StoreUnavailable(f"audit store failure: {exc!r}"))

    async def _write(self, batch: list[tuple[Op, asyncio.Future[None]]], attempt: int = 0) -> bool:
        """Write and settle the batch; False when the database turned out to be unreachable."""
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
                for _, future in batch:
                    _settle(future, StoreUnavailable(f"database unavailable: {exc}"))
                return False
            if len(batch) == 1:
                # A race another process can win (say, the next event number of the same message)
                # is worth another go with fresh reads; anything else is this op's own error.
                if attempt < _RETRIES and self._retryable(ops[0], exc):
                    return await self._write(batch, attempt + 1)
                _settle(batch[0][1], _Unexplained(exc))
                return True
            # One bad item (a unique violation, most likely) spoils the transaction for all:
            # write them one by one so only the guilty one fails.
            for i, item in enumerate(batch):
                if not await self._write([item]):
                    # Gone half-way: fail the rest now instead of timing out on each in turn.
                    for _, future in batch[i + 1 :]:
                        _settle(future, StoreUnavailable("database unavailable"))
                    return False
            return True
        self.batches += 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, outcome)
        return True

    async def _explain_safely(self, op: Op, exc: Exception) -> BaseException:
        try:
            return await self._explain(op, exc)
        except Exception as explain_exc:
            if is_unavailable(explain_exc):
                return StoreUnavailable(str(explain_exc))
            return exc


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
