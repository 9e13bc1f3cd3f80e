"""Engine construction per backend, and which errors mean "the database is not there"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from hub.service.ports import StoreUnavailable

# Bounded waits everywhere: a caller must get StoreUnavailable, never hang, when the DB is away.
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 5.0
SQLITE_BUSY_TIMEOUT_MS = 5000


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for an in-memory database or another backend."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    if is_sqlite(url):
        return _sqlite_engine(url, pool_size)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=POOL_TIMEOUT_S,
        # A connection killed by the server (restart, pg_terminate_backend, failover) is noticed
        # at checkout and replaced, so one dead socket does not fail the next batch.
        pool_pre_ping=True,
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": 30.0},
    )


def _sqlite_engine(url: str, pool_size: int) -> AsyncEngine:
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    if path is None:
        # Each connection to :memory: is a different database; keep exactly one.
        kwargs["poolclass"] = StaticPool
    else:
        # Every aiosqlite connection is a thread of its own, and SQLite has one writer at a time
        # anyway: a few connections serve the concurrent reads (WAL), more only cost threads.
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers do not block the writer. FULL: a commit is on disk when it returns,
        # which is the store's promise (NORMAL would lose the last commits on power loss).
        # INCREMENTAL: retention can give deleted bodies' pages back (takes effect on a new file only).
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that say the database cannot be reached, not that the statement is wrong."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, OSError | TimeoutError | ConnectionError)


@asynccontextmanager
async def unavailable_as_store_error(seconds: float) -> AsyncIterator[None]:
    """Bound a database call in time and turn "cannot reach the database" into StoreUnavailable."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"database unavailable: {exc}") from exc
        raise
