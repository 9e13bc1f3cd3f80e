"""`hub migrate`: upgrade the database named by HUB_DATABASE_URL to the newest schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from hub.adapters.db.migrate import upgrade
from hub.service.ports import StoreUnavailable
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema (HUB_DATABASE_URL)",
        description="Upgrade the database named by HUB_DATABASE_URL to the newest schema revision. "
        "Creates the folder of a SQLite file when needed. Safe to run again.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    url = Settings.from_env().database_url
    try:
        revision = asyncio.run(upgrade(url))
    except StoreUnavailable as exc:
        print(f"hub migrate: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    print(f"database at revision {revision}")
    return 0
