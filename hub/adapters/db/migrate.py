"""Run the Alembic migrations programmatically (for `hub migrate` and the test fixtures)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from hub.adapters.db.engine import create_engine, sqlite_path, unavailable_as_store_error
from hub.adapters.db.tables import metadata
from hub.settings import PROJECT_ROOT

ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATE_TIMEOUT_S = 120.0


def alembic_config() -> Config:
    # An absolute path, so the working directory does not matter.
    return Config(str(ALEMBIC_INI))


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


async def upgrade(url: str) -> str:
    """Upgrade the database to head; returns the revision it is at afterwards."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_size=1)
    try:
        async with unavailable_as_store_error(MIGRATE_TIMEOUT_S), engine.begin() as conn:
            await conn.run_sync(_upgrade)
            revision: str | None = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    assert revision is not None
    return revision


def _upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def missing_tables(url: str) -> list[str]:
    """The tables of the schema that the database lacks (all of them before `hub migrate`)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        # Connecting would create an empty file (and fail when its folder is missing).
        return sorted(metadata.tables)
    engine = create_engine(url, pool_size=1)
    try:
        async with unavailable_as_store_error(30.0), engine.connect() as conn:
            present: set[str] = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return sorted(set(metadata.tables) - present)
