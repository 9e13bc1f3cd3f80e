"""`hub replay MESSAGE_ID...`: deliver stored messages again (same message_id), audited as a replay."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from typing import Any

from hub.adapters.broker import AmqpPublisher
from hub.adapters.db import create_audit_store
from hub.bootstrap import body_cipher_of, topology_of
from hub.service.replay import ReplayResult, replay
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay", help="deliver messages again from their stored body"
    )
    p.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()

    async def main() -> list[ReplayResult]:
        store = await create_audit_store(settings.database_url, cipher=body_cipher_of(settings))
        publisher = AmqpPublisher(settings.amqp_url, topology_of(settings))
        try:
            await publisher.start()
            by = f"cli:{getpass.getuser()}"
            return [await replay(mid, store=store, publisher=publisher, by=by) for mid in args.message_ids]
        finally:
            await publisher.close()
            await store.close()

    results = asyncio.run(main())
    for r in results:
        print(json.dumps({"message_id": r.message_id, "replayed": r.ok, "detail": r.detail}))
    return 0 if all(r.ok for r in results) else 1
