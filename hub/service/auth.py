"""Who is calling: a bearer token (or, later, a client certificate) resolved to a party.

Token look-ups are cached briefly so the hot path does not hit the database on every request;
a revoked token stops working within `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hub.domain.parties import PartyRef


@dataclass(frozen=True, slots=True)
class Principal:
    party: PartyRef | None  # None for the operator (admin) token
    admin: bool = False

    def is_party(self, ref: PartyRef) -> bool:
        return self.party == ref


class TokenAuthenticator:
    def __init__(
        self,
        lookup: Callable[[str], Awaitable[PartyRef | None]],
        *,
        admin_token_sha256: str | None = None,
        ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._admin = admin_token_sha256
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal | None:
        token = _bearer(authorization)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self._admin and hmac.compare_digest(digest, self._admin):
            return Principal(None, admin=True)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        party = await self._lookup(token)
        principal = Principal(party) if party is not None else None
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, principal)
        return principal


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token
