"""Who is calling: a client certificate (mutual TLS) or a bearer token, resolved to a party.

A client certificate that the directory knows (routing_rules/certificates.csv: by the OIN in its
subject's serialNumber, or by its SHA-256 fingerprint) identifies the caller, whatever the request
says otherwise. Without one, a bearer token does, unless bearer tokens are switched off
(HUB_BEARER_TOKENS=off, for production behind mutual TLS).

Token look-ups are cached briefly so the hot path does not hit the database on every request;
a revoked token stops working within `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from hub.domain.directory import CertificateRule
from hub.domain.parties import PartyRef
from hub.domain.vandaag import vandaag


@dataclass(frozen=True, slots=True)
class Principal:
    party: PartyRef | None  # None for the operator (admin) token
    admin: bool = False

    def is_party(self, ref: PartyRef) -> bool:
        return self.party == ref


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What the hub reads from a verified client certificate."""

    fingerprint: str  # SHA-256 of the DER certificate, lower-case hex
    oin: str | None  # the subject's serialNumber (PKIoverheid: the organisation's OIN)
    subject: str  # for logs: the subject as one line


CertificateLookup = Callable[[str | None, str, date], CertificateRule | None]


class TokenAuthenticator:
    def __init__(
        self,
        lookup: Callable[[str], Awaitable[PartyRef | None]],
        *,
        admin_token_sha256: str | None = None,
        ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        certificates: CertificateLookup | None = None,
        bearer_tokens: bool = True,
        today: Callable[[], date] = vandaag,
    ) -> None:
        self._lookup = lookup
        self._certificates = certificates
        self._bearer = bearer_tokens
        self._today = today
        self._admin = admin_token_sha256
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    @property
    def bearer_tokens(self) -> bool:
        return self._bearer

    async def authenticate(
        self, authorization: str | None, certificate: ClientCertificate | None = None
    ) -> Principal | None:
        """The caller, or None (401). A known certificate wins over a token; an unknown one does not
        authenticate by itself, but a bearer token on the same connection still may (when tokens are on)."""
        if certificate is not None and self._certificates is not None:
            rule = self._certificates(certificate.oin, certificate.fingerprint, self._today())
            if rule is not None:
                return Principal(rule.party, admin=rule.party is None)
        if not self._bearer:
            return None
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
