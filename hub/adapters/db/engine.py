"""Engine construction per backend, and which errors mean "the database is not there"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from hub.service.ports import StoreUnavailable

# Bounded waits everywhere: a caller must get StoreUnavailable, never hang, when the DB is away.
CONNECT_TIMEOUT_S = 5.0
POOL_TIMEOUT_S = 5.0
SQLITE_BUSY_TIMEOUT_MS = 5000
# A pooled PostgreSQL connection idle for longer than this is pinged at checkout.
IDLE_PING_S = 1.0


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
    engine = create_async_engine(
        url,
        # All 2 x pool_size connections stay open: with overflow connections, every checkout above
        # pool_size opened a new connection (TLS attempt, no prepared statements) and closed it on
        # return, ~25 % of the gateway's CPU at 64 senders (docs/performance.md). Same upper bound.
        pool_size=2 * pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": 30.0},
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pre-ping, but only connections that sat idle in the pool for more than IDLE_PING_S.

    A connection killed by the server (restart, pg_terminate_backend, failover) is noticed at checkout
    and replaced, so one dead socket does not fail the next batch. SQLAlchemy's pool_pre_ping does the
    same at every checkout, which costs three round trips (BEGIN, ping, ROLLBACK) per read and per
    batch under load: ~10 % of the gateway's CPU at 64 senders (docs/performance.md). A connection
    whose socket the server closed is refused at once (no round trip); one in use moments ago is
    pinged only after IDLE_PING_S, and should the server die in between, the statement fails and
    SQLAlchemy's disconnect handling invalidates the whole pool.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # Free check first: a socket the server closed (pg_terminate_backend, restart) is seen by
        # asyncpg as soon as the event loop reads the EOF.
        driver = getattr(dbapi_connection, "_connection", None)
        if driver is not None and getattr(driver, "is_closed", lambda: False)():
            raise DisconnectionError("pooled connection was closed by the server")
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"pooled connection is dead: {exc!r}") from exc
        if alive is False:
            raise DisconnectionError("pooled connection is dead")

    event.listen(pool, "checkin", checkin)
    event.listen(pool, "checkout", checkout)


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


# SQLSTATEs that mean "the server cannot serve now", not "the statement is wrong": connection
# exceptions (class 08), the server shutting down or starting up (57P01-57P03), too many connections.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def is_unavailable(exc: BaseException) -> bool:
    """True for errors that say the database cannot be reached, not that the statement is wrong."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, DBAPIError):
        # E.g. a connect while PostgreSQL shuts down or starts up: "the database system is shutting
        # down" (57P03) arrives as a plain DBAPIError, not as an OperationalError.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES):
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
