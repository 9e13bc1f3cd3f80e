"""Alembic environment, async style: runs the migrations over an AsyncEngine (aiosqlite or asyncpg).

Two ways in:
- hub.adapters.db.migrate.upgrade() (used by `hub migrate` and the tests) opens the connection itself
  and passes it as config.attributes["connection"], so migrating works inside a running event loop;
- the plain `alembic` command, which gets here without a connection and builds an engine from the
  URL in the config (or HUB_DATABASE_URL).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from hub.adapters.db.engine import create_engine
from hub.adapters.db.tables import metadata
from hub.settings import Settings

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    asyncio.run(_run_with_own_engine(url))


main()
