"""SqlAlchemyPartyStore: parties registered at run time and their API tokens.

Low volume (an administrator's commands, one token look-up per request), so plain transactions,
no group commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.adapters.db.engine import create_engine, unavailable_as_store_error
from hub.adapters.db.tables import parties, tokens
from hub.domain.parties import PartyKind, PartyRef
from hub.service.ports import PartyExists, RegisteredParty, TokenInfo

TOKEN_PREFIX = "hub_"  # recognisable in logs and secret scanners; never a valid id
TIMEOUT_S = 10.0


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlAlchemyPartyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        async with unavailable_as_store_error(TIMEOUT_S), self.engine.begin() as conn:
            yield conn

    async def add_party(self, ref: PartyRef, naam: str) -> RegisteredParty:
        party = RegisteredParty(ref, naam, datetime.now(UTC))
        try:
            async with self._begin() as conn:
                await conn.execute(
                    insert(parties).values(
                        kind=ref.kind.value, code=ref.code, naam=naam, registered_at=party.registered_at
                    )
                )
        except IntegrityError:
            existing = await self.get_party(ref)
            if existing is None:
                raise
            raise PartyExists(existing) from None
        return party

    async def get_party(self, ref: PartyRef) -> RegisteredParty | None:
        query = select(parties).where(parties.c.kind == ref.kind.value, parties.c.code == ref.code)
        async with self._begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return RegisteredParty(ref, row["naam"], row["registered_at"])

    async def list_parties(self) -> list[RegisteredParty]:
        query = select(parties).order_by(parties.c.kind, parties.c.code)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            RegisteredParty(PartyRef(PartyKind(r["kind"]), r["code"]), r["naam"], r["registered_at"])
            for r in rows
        ]

    async def create_token(self, ref: PartyRef, label: str) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._begin() as conn:
            await conn.execute(
                insert(tokens).values(
                    party_kind=ref.kind.value,
                    party_code=ref.code,
                    token_sha256=token_digest(token),
                    label=label,
                    created_at=datetime.now(UTC),
                )
            )
        return token

    async def list_tokens(self, ref: PartyRef | None = None) -> list[TokenInfo]:
        query = select(tokens).order_by(tokens.c.id)
        if ref is not None:
            query = query.where(tokens.c.party_kind == ref.kind.value, tokens.c.party_code == ref.code)
        async with self._begin() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            TokenInfo(
                r["id"],
                PartyRef(PartyKind(r["party_kind"]), r["party_code"]),
                r["label"],
                r["created_at"],
                r["revoked_at"],
            )
            for r in rows
        ]

    async def revoke_token(self, token_or_id: str) -> bool:
        if not token_or_id.startswith(TOKEN_PREFIX) and token_or_id.isdigit():
            which = tokens.c.id == int(token_or_id)
        else:
            which = tokens.c.token_sha256 == token_digest(token_or_id)
        async with self._begin() as conn:
            result = await conn.execute(
                update(tokens)
                .where(which, tokens.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
                .returning(tokens.c.id)
            )
            return result.first() is not None

    async def party_for_token(self, token: str) -> PartyRef | None:
        # Looked up by its sha256, so the timing of the index search says nothing about the token;
        # compare_digest then keeps the final check constant-time as well.
        digest = token_digest(token)
        query = select(tokens.c.party_kind, tokens.c.party_code, tokens.c.token_sha256).where(
            tokens.c.token_sha256 == digest, tokens.c.revoked_at.is_(None)
        )
        async with self._begin() as conn:
            row = (await conn.execute(query)).first()
        if row is None or not hmac.compare_digest(row.token_sha256, digest):
            return None
        return PartyRef(PartyKind(row.party_kind), row.party_code)


async def create_party_store(url: str, *, pool_size: int = 2) -> SqlAlchemyPartyStore:
    return SqlAlchemyPartyStore(create_engine(url, pool_size=pool_size))
