"""Who may do what over HTTP: the caller's principal, refusals that are audited, and the limits.

- `principal(request)`: the caller from its client certificate (mutual TLS) or bearer token, resolved
  once per request.
- `refuse(...)`: every 401/403 and every 404 that hides another party's message is written to the
  audit trail (a `weigeringen` row: code, "METHOD /path", the party when known; never a body).
- `limits_middleware`: per-party rate limit (token bucket) and concurrency limit, 429 `rate_limited`
  with Retry-After. The cap on request bytes in flight is applied where bodies are read (web.py).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from aiohttp import web

from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyRef
from hub.entrypoints.http_errors import error_response
from hub.entrypoints.logs import fields
from hub.service.auth import ClientCertificate, Principal, TokenAuthenticator
from hub.service.limits import ByteBudget, ConcurrencyLimiter, RateLimiter, retry_after
from hub.service.observe import IntakeObserver, NullIntakeObserver
from hub.service.ports import AuditStore, StoreUnavailable, Weigering

log = logging.getLogger("hub.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Access:
    authenticator: TokenAuthenticator
    store: AuditStore  # where refusals are recorded
    rate: RateLimiter
    concurrency: ConcurrencyLimiter
    budget: ByteBudget
    observer: IntakeObserver = field(default_factory=NullIntakeObserver)


ACCESS = web.AppKey("access", Access)


@dataclass(frozen=True, slots=True)
class _Resolved:
    principal: Principal | None


_PRINCIPAL = web.RequestKey("principal", _Resolved)
REQUEST_ID = web.RequestKey("request_id", str)


def request_id(request: web.Request) -> str:
    """The request id the error middleware gave this request ("" before it ran)."""
    rid: str = request.get(REQUEST_ID, "")
    return rid


def client_certificate(request: web.Request) -> ClientCertificate | None:
    """The verified client certificate of the request's TLS connection, if there is one."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    decoded = ssl_object.getpeercert() or {}
    subject = cast(tuple[tuple[tuple[str, str], ...], ...], decoded.get("subject", ()))
    pairs = [(str(k), str(v)) for rdn in subject for k, v in rdn]
    oin = next((v for k, v in pairs if k == "serialNumber"), None)
    return ClientCertificate(
        fingerprint=hashlib.sha256(der).hexdigest(),
        oin=oin,
        subject=",".join(f"{k}={v}" for k, v in pairs)[:200],
    )


def has_credentials(request: web.Request) -> bool:
    return "Authorization" in request.headers or client_certificate(request) is not None


async def principal(request: web.Request) -> Principal | None:
    """The caller (None: not authenticated). Raises StoreUnavailable when a token cannot be looked up."""
    if _PRINCIPAL in request:
        return request[_PRINCIPAL].principal
    found = await request.app[ACCESS].authenticator.authenticate(
        request.headers.get("Authorization"), client_certificate(request)
    )
    request[_PRINCIPAL] = _Resolved(found)
    return found


def unauthenticated_detail(request: web.Request) -> str:
    certificate = client_certificate(request)
    if certificate is not None:
        return "the client certificate is not in the hub's directory of parties"
    if not request.app[ACCESS].authenticator.bearer_tokens:
        return "a client certificate the hub knows is required (bearer tokens are switched off)"
    return "a valid bearer token is required"


async def refuse(
    request: web.Request,
    rid: str,
    code: ErrorCode,
    detail: str,
    *,
    party: PartyRef | None = None,
    status: int | None = None,
) -> web.Response:
    """An error answer, recorded in the audit trail first (code and path; no body, nothing from one)."""
    await record_refusal(request, rid, code, detail, party=party)
    return error_response(code, detail, rid, status=status)


async def record_refusal(
    request: web.Request, rid: str, code: ErrorCode, detail: str, *, party: PartyRef | None = None
) -> None:
    weigering = Weigering(
        request_id=rid,
        at=datetime.now(UTC),
        code=code,
        detail=detail[:500],
        afzender=party,
        path=f"{request.method} {request.path}"[:200],
    )
    log.info(
        "refused",
        extra=fields(event="access_refused", request_id=rid, code=code.value, path=weigering.path),
    )
    try:
        await request.app[ACCESS].store.record_refusal(weigering)
    except (StoreUnavailable, TimeoutError):
        log.warning("could not record refusal %s (%s)", rid, code.value)


async def unauthenticated(request: web.Request, rid: str) -> web.Response:
    return await refuse(request, rid, ErrorCode.UNAUTHENTICATED, unauthenticated_detail(request))


@web.middleware
async def limits_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per-party limits, before the handler does any work. Calls without credentials pass: they are
    public (health, metrics) or refused 401 by their handler."""
    access = request.app.get(ACCESS)
    if access is None or not has_credentials(request):
        return await handler(request)
    try:
        caller = await principal(request)
    except StoreUnavailable:
        return await handler(request)  # the handler answers 503 when it needs the caller
    if caller is None or caller.party is None:
        return await handler(request)
    party = caller.party
    wait = access.rate.take(party)
    if wait > 0:
        return _rate_limited(request, access, party, wait, "requests")
    if not access.concurrency.acquire(party):
        return _rate_limited(request, access, party, 1.0, "requests at once")
    try:
        return await handler(request)
    finally:
        access.concurrency.release(party)


def _rate_limited(
    request: web.Request, access: Access, party: PartyRef, wait: float, what: str
) -> web.Response:
    rid = request_id(request)
    if request.method == "POST" and request.path == "/v1/berichten":
        access.observer.refused(ErrorCode.RATE_LIMITED, None, None)
    log.info(
        "rate limited",
        extra=fields(event="rate_limited", request_id=rid, party_kind=party.kind.value, what=what),
    )
    response = error_response(
        ErrorCode.RATE_LIMITED,
        f"{party} sends more {what} than its limit allows; retry later",
        rid,
        retry_after=retry_after(wait),
    )
    response.force_close()  # do not read the rest of a body we will not use
    return response
