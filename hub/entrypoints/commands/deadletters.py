"""`hub deadletters list`: the messages whose delivery was given up, with why (one JSON line each)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from hub.adapters.db import create_audit_store
from hub.domain.parties import PartyRef
from hub.service.ports import StoredBericht
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("deadletters", help="list dead letters")
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="one JSON object per line, oldest first")
    ls.add_argument("--receiver", help="only this receiver, as kind:code (e.g. aanbieder:12345678)")
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=run)


def dead_letter_json(b: StoredBericht) -> dict[str, Any]:
    return {
        "message_id": b.message_id,
        "message": b.berichttype,
        "afzender": str(b.afzender),
        "receiver": str(b.receiver),
        "received_at": b.received_at.isoformat(),
        "dead_lettered_at": b.updated_at.isoformat(),
        "attempts": b.attempts,
        "reason": b.last_error,
    }


def run(args: argparse.Namespace) -> int:
    receiver = PartyRef.parse(args.receiver) if args.receiver else None

    async def main() -> list[StoredBericht]:
        store = await create_audit_store(Settings.from_env().database_url)
        try:
            return await store.dead_letters(limit=args.limit, receiver=receiver)
        finally:
            await store.close()

    for b in asyncio.run(main()):
        print(json.dumps(dead_letter_json(b)))
    return 0
