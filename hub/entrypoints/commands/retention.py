"""`hub retention run`: delete the bodies of messages delivered longer ago than HUB_RETENTION_DAYS.

The worker does this every hour by itself; this is for ops who want it now. The audit metadata stays;
undelivered messages are never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from hub.adapters.db import create_audit_store
from hub.entrypoints.commands.worker import purge_old_bodies
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("retention", help="delete old message bodies")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("run", help="run retention once")
    r.add_argument("--batch", type=int, default=500)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()

    async def main() -> int:
        store = await create_audit_store(settings.database_url)
        try:
            return await purge_old_bodies(store, settings.retention_days, batch=args.batch)
        finally:
            await store.close()

    print(json.dumps({"deleted_bodies": asyncio.run(main()), "retention_days": settings.retention_days}))
    return 0
