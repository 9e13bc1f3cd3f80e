"""Shared fixtures for integration tests against real databases.

`database_url` yields the URL of a migrated, empty database, once on SQLite and once on PostgreSQL
(127.0.0.1:5432, user postgres, trust auth). The schema is migrated once per session into a
template (a SQLite file; a PostgreSQL database); each test gets a fresh copy, dropped afterwards.
Sync fixtures on purpose: they serve async tests and sync CLI tests (which call asyncio.run) alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from hub.adapters.db.migrate import upgrade

PG_ADMIN_DSN = os.environ.get("HUB_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
_SESSION = f"hub_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in a thread of its own.

    A thread, so it works whether or not the calling thread already runs an event loop
    (pytest-asyncio's), and leaves that thread's loop alone.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def asyncpg_url(database: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db-template") / "hub.sqlite"
    run_async(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    try:
        run_async(pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        # scripts/test.sh (and so CI) starts PostgreSQL and sets HUB_REQUIRE_SERVERS: there a missing
        # server is a failure, not a skip that would hide it.
        if os.environ.get("HUB_REQUIRE_SERVERS"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    name = f"{_SESSION}_tpl"
    run_async(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        run_async(upgrade(asyncpg_url(name)))
        yield name
    finally:
        run_async(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of its own for this test; the param says which engine."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "hub.sqlite"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template_db: str = request.getfixturevalue("postgres_template")
    name = f"{_SESSION}_{next(_counter)}"
    run_async(pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield asyncpg_url(name)
    finally:
        # FORCE: a test that failed half-way may still hold connections.
        run_async(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
