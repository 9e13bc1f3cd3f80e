"""`hub keys`: keys for the encryption of stored bodies at rest (HUB_BODY_KEYS, docs/security.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from hub.adapters.db import create_audit_store
from hub.adapters.db.body_crypto import BodyCipher, BodyKeysInvalid
from hub.bootstrap import body_cipher_of
from hub.service.ports import BodyUnreadable, StoreUnavailable
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("keys", help="keys for encrypting stored bodies")
    verbs = p.add_subparsers(dest="keys_command", required=True)
    gen = verbs.add_parser("generate", help="print a new key as id:base64, to put first in HUB_BODY_KEYS")
    gen.add_argument("--id", required=True, help="the key id (1-32 of A-Za-z0-9._-), e.g. k2")
    gen.set_defaults(func=_generate)
    status = verbs.add_parser("status", help="how many stored bodies each key encrypts (null: none)")
    status.set_defaults(func=lambda args: _run(_status, args))
    rotate = verbs.add_parser(
        "rotate", help="re-encrypt every body not under the first key of HUB_BODY_KEYS, in batches"
    )
    rotate.add_argument("--batch", type=int, default=100, help="bodies per batch (default 100)")
    rotate.set_defaults(func=lambda args: _run(_rotate, args))


def _generate(args: argparse.Namespace) -> int:
    item = f"{args.id}:{BodyCipher.new_key()}"
    try:
        BodyCipher.from_setting(item)
    except BodyKeysInvalid as exc:
        print(f"hub keys: {exc}", file=sys.stderr)
        return 2
    print(item)
    return 0


async def _status(cipher: BodyCipher, url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = await create_audit_store(url, cipher=cipher)
    try:
        counts = await store.body_key_counts()
    finally:
        await store.close()
    return {
        "current_key": cipher.current,
        "configured_keys": list(cipher.key_ids),
        "bodies_by_key": {str(k) if k is not None else "null": n for k, n in sorted(counts.items(), key=str)},
        "unreadable_keys": sorted(k for k in counts if k is not None and k not in cipher.key_ids),
    }


async def _rotate(cipher: BodyCipher, url: str, args: argparse.Namespace) -> dict[str, Any]:
    if cipher.current is None:
        raise BodyKeysInvalid("HUB_BODY_KEYS is empty: there is no key to rotate to")
    store = await create_audit_store(url, cipher=cipher)
    total = 0
    try:
        while (done := await store.rotate_bodies(batch=max(1, args.batch))) > 0:
            total += done
        counts = await store.body_key_counts()
    finally:
        await store.close()
    left = {str(k): n for k, n in counts.items() if k != cipher.current}
    return {"re_encrypted": total, "key": cipher.current, "not_under_key": left}


def _run(action: Any, args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        cipher = body_cipher_of(settings)
        result = asyncio.run(action(cipher, settings.database_url, args))
    except (BodyKeysInvalid, BodyUnreadable) as exc:
        print(f"hub keys: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"hub keys: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
