"""Which database errors mean "unavailable" (503 and retry), not "the statement is wrong"."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from hub.adapters.db.engine import is_unavailable

_ERROR = AsyncAdapt_asyncpg_dbapi(asyncpg).Error  # type: ignore[no-untyped-call]


def _wrapped(error: Exception) -> DBAPIError:
    return DBAPIError("SELECT 1", None, _ERROR(str(error), error))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    "error",
    [
        # Found by tests/e2e/test_faults.py: a connect while PostgreSQL shuts down was a 500.
        asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.exceptions.ConnectionFailureError("connection failure"),
    ],
)
def test_server_going_away_is_unavailable(error: Exception) -> None:
    assert is_unavailable(_wrapped(error))


@pytest.mark.parametrize(
    "error",
    [asyncpg.exceptions.UniqueViolationError("duplicate key"), asyncpg.exceptions.UndefinedTableError("x")],
)
def test_statement_errors_are_not_unavailable(error: Exception) -> None:
    assert not is_unavailable(_wrapped(error))
