"""`hub parties`: register parties and manage their API tokens in the database (HUB_DATABASE_URL)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from hub.adapters.db import SqlAlchemyPartyStore, create_party_store
from hub.adapters.db.migrate import missing_tables
from hub.domain.parties import PartyKind, PartyRef, code_is_valid_for, kind_of_code
from hub.service.ports import PartyExists, StoreUnavailable
from hub.settings import Settings

_KINDS = [k.value for k in PartyKind]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("parties", help="register parties, manage API tokens")
    psub = p.add_subparsers(dest="parties_command", required=True)

    add = psub.add_parser("add", help="register a party (an aanbieder, usually)")
    add.add_argument("--kind", required=True, choices=_KINDS)
    add.add_argument("--code", required=True, help="AGB code, gemeentecode, or the fixed code (CAK ...)")
    add.add_argument("--name", default="", help="the party's name")
    add.set_defaults(func=lambda args: _run(_add, args))

    ls = psub.add_parser("list", help="list registered parties and all tokens (never the tokens themselves)")
    ls.set_defaults(func=lambda args: _run(_list, args))

    token = psub.add_parser("token", help="create or revoke API tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token; prints only the token on stdout")
    create.add_argument("--party", required=True, metavar="CODE")
    create.add_argument("--kind", choices=_KINDS, help="default: inferred from the code's form")
    create.add_argument("--label", default="", help="what the token is for (shown by `list`)")
    create.set_defaults(func=lambda args: _run(_create_token, args))
    revoke = tsub.add_parser("revoke", help="revoke a token, by the token itself or by its id")
    revoke.add_argument("token_or_id", metavar="TOKEN_OR_ID")
    revoke.set_defaults(func=lambda args: _run(_revoke_token, args))


class _Refused(Exception):
    """A user error: the message is printed, the exit code is 1."""


Action = Callable[[SqlAlchemyPartyStore, argparse.Namespace], Awaitable[None]]


def _run(action: Action, args: argparse.Namespace) -> int:
    try:
        asyncio.run(_with_store(action, args))
    except _Refused as exc:
        print(f"hub parties: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"hub parties: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    return 0


async def _with_store(action: Action, args: argparse.Namespace) -> None:
    url = Settings.from_env().database_url
    missing = await missing_tables(url)
    if missing:
        raise _Refused(f"the database has no {', '.join(missing)} table(s) yet: run `hub migrate` first")
    store = await create_party_store(url)
    try:
        await action(store, args)
    finally:
        await store.close()


def _ref(kind_name: str | None, code: str) -> PartyRef:
    kind = PartyKind(kind_name) if kind_name else kind_of_code(code)
    if kind is None:
        raise _Refused(f"cannot tell the kind of party from {code!r}: give --kind")
    if not code_is_valid_for(kind, code):
        raise _Refused(f"{code!r} is not a valid code for a {kind.value}")
    return PartyRef(kind, code)


async def _add(store: SqlAlchemyPartyStore, args: argparse.Namespace) -> None:
    ref = _ref(args.kind, args.code)
    try:
        await store.add_party(ref, args.name)
    except PartyExists as exc:
        raise _Refused(f"{ref} is registered already (as {exc.existing.naam!r})") from None
    print(f"registered {ref}")


async def _list(store: SqlAlchemyPartyStore, args: argparse.Namespace) -> None:
    print(f"{'PARTY':<20} {'REGISTERED':<22} NAME")
    for p in await store.list_parties():
        print(f"{p.ref!s:<20} {_when(p.registered_at):<22} {p.naam}")
    print()
    print(f"{'TOKEN ID':<9} {'PARTY':<20} {'CREATED':<22} {'REVOKED':<22} LABEL")
    for t in await store.list_tokens():
        revoked = _when(t.revoked_at) if t.revoked_at else "-"
        print(f"{t.id:<9} {t.party!s:<20} {_when(t.created_at):<22} {revoked:<22} {t.label}")


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}Z"  # stored and returned in UTC


async def _create_token(store: SqlAlchemyPartyStore, args: argparse.Namespace) -> None:
    ref = _ref(args.kind, args.party)
    # Gemeenten and the national bodies are in the routing files' directory; an aanbieder must be
    # known somewhere, or a typo would silently make a token that routes nowhere.
    if ref.kind is PartyKind.AANBIEDER and await store.get_party(ref) is None and not _in_routing_files(ref):
        raise _Refused(
            f"{ref} is not registered: run `hub parties add --kind aanbieder --code {ref.code}` first"
        )
    print(await store.create_token(ref, args.label))


async def _revoke_token(store: SqlAlchemyPartyStore, args: argparse.Namespace) -> None:
    if not await store.revoke_token(args.token_or_id):
        raise _Refused("no such active token")
    print("revoked", file=sys.stderr)  # stdout stays empty: scripts read only tokens from it


def _in_routing_files(ref: PartyRef) -> bool:
    """Whether the routing files name the party; False when they cannot be read (with a warning)."""
    if importlib.util.find_spec("hub.adapters.routing_files") is None:
        return False
    from hub.adapters import routing_files

    folder = Settings.from_env().routing_rules
    try:
        rules = routing_files.load_rules(folder)
    except Exception as exc:  # a broken rules folder must not block token management
        print(f"hub parties: warning: cannot read the routing files in {folder}: {exc}", file=sys.stderr)
        return False
    return any(p.ref == ref for p in rules.parties)
