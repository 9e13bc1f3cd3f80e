"""Pure parts of the DB adapter: the UTC column type and the engine helpers (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.adapters.db.engine import is_unavailable, sqlite_path
from hub.adapters.db.types import UtcDateTime

CET = timezone(timedelta(hours=1))


def test_utc_datetime_refuses_naive_values() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(datetime(2025, 1, 1), sqlite.dialect())


def test_utc_datetime_stores_utc_and_returns_aware_utc_on_sqlite() -> None:
    column, dialect = UtcDateTime(), sqlite.dialect()
    stored = column.process_bind_param(datetime(2025, 1, 1, 13, 0, tzinfo=CET), dialect)
    assert stored == datetime(2025, 1, 1, 12, 0)  # naive, in UTC: SQLite keeps text without offset
    back = column.process_result_value(stored, dialect)
    assert back == datetime(2025, 1, 1, 12, 0, tzinfo=UTC) and back is not None and back.tzinfo is UTC


def test_utc_datetime_keeps_the_offset_for_postgres_and_normalises_results() -> None:
    column, dialect = UtcDateTime(), PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    stored = column.process_bind_param(datetime(2025, 1, 1, 13, 0, tzinfo=CET), dialect)
    assert stored is not None and stored.tzinfo is not None
    back = column.process_result_value(datetime(2025, 1, 1, 13, 0, tzinfo=CET), dialect)
    assert back is not None and back.tzinfo is UTC and back.hour == 12


def test_sqlite_path() -> None:
    assert sqlite_path("sqlite+aiosqlite:////var/lib/hub/hub.sqlite") == Path("/var/lib/hub/hub.sqlite")
    assert sqlite_path("sqlite+aiosqlite:///:memory:") is None
    assert sqlite_path("sqlite+aiosqlite://") is None
    assert sqlite_path("postgresql+asyncpg://postgres@127.0.0.1:5432/hub") is None


def test_is_unavailable_tells_connection_trouble_from_bad_statements() -> None:
    assert is_unavailable(OperationalError("SELECT 1", {}, Exception("connection refused")))
    assert is_unavailable(ConnectionRefusedError())
    assert is_unavailable(TimeoutError())
    assert not is_unavailable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_unavailable(ValueError("naive datetime"))
