"""The HTTP gateway: thin handlers over the intake service. Built only by hub.bootstrap.create_app."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from aiohttp import web

from hub.domain.errors import ErrorCode
from hub.entrypoints.http_errors import error_response
from hub.entrypoints.logs import fields
from hub.service.auth import Principal, TokenAuthenticator
from hub.service.intake import Intake, Refused, Unavailable
from hub.service.observe import IntakeObserver, NullIntakeObserver
from hub.service.ports import HubStore, StoredBericht, StoreUnavailable

log = logging.getLogger("hub.gateway")

_XML_TYPES = {"application/xml", "text/xml"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class Gateway:
    intake: Intake
    store: HubStore
    authenticator: TokenAuthenticator
    max_body_bytes: int
    ready: Callable[[], Awaitable[dict[str, str]]]
    reload_rules: Callable[[], Awaitable[dict[str, Any]]]
    observer: IntakeObserver = field(default_factory=NullIntakeObserver)
    # GET /metrics: (body, content type) for the scraper's Accept header; None: no metrics (404)
    metrics: Callable[[str | None], Awaitable[tuple[bytes, str]]] | None = None
    today: Callable[[], date] = date.today


GATEWAY = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id(request: web.Request) -> str:
    rid: str = request.get(REQUEST_ID, "")
    return rid


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer carries a request id; every error is JSON; nothing escapes as a traceback."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    request[REQUEST_ID] = rid
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error_response(ErrorCode.TOO_LARGE, "the body is larger than the hub accepts", rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = ErrorCode.NOT_FOUND if exc.status == 404 else ErrorCode.FORBIDDEN
        return error_response(code, exc.reason, rid, status=exc.status)
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception:
        log.exception("unhandled error in %s %s (request %s)", request.method, request.path, rid)
        return web.json_response(
            {"error": {"code": "internal", "message": "internal error", "errors": []}, "request_id": rid},
            status=500,
            headers={"X-Request-Id": rid},
        )
    response.headers["X-Request-Id"] = rid
    return response


async def _principal(request: web.Request) -> Principal | None:
    gw = request.app[GATEWAY]
    return await gw.authenticator.authenticate(request.headers.get("Authorization"))


def _refuse_early(gw: Gateway, rid: str, code: ErrorCode, detail: str) -> web.StreamResponse:
    """A refusal before the intake (auth, media type, size): counted and logged like the others."""
    response = error_response(code, detail, rid)
    if code is ErrorCode.UNAVAILABLE:
        gw.observer.unavailable("database")
        _outcome(logging.WARNING, "unavailable", rid, response.status, what="database")
    else:
        gw.observer.refused(code, None, None)
        _outcome(logging.INFO, "refused", rid, response.status, code=code.value)
    return response


def _outcome(level: int, event: str, rid: str, status: int, **more: str | bool | None) -> None:
    """The one log line per message outcome: structured fields, never a body or a value from it."""
    log.log(level, event, extra=fields(event=event, request_id=rid, status=status, **more))


async def post_bericht(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    rid = request_id(request)
    gw.observer.received()
    try:
        principal = await _principal(request)
    except StoreUnavailable:
        return _refuse_early(gw, rid, ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry later")
    if principal is None:
        return _refuse_early(gw, rid, ErrorCode.UNAUTHENTICATED, "a valid bearer token is required")
    if principal.party is None:
        return _refuse_early(gw, rid, ErrorCode.FORBIDDEN, "the operator token cannot send messages")
    ctype = request.content_type.lower()
    if ctype not in _XML_TYPES and not ctype.endswith("+xml"):
        return _refuse_early(
            gw,
            rid,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be application/xml or text/xml, not {ctype[:80]!r}",
        )
    too_large = f"the body is larger than the hub accepts ({gw.max_body_bytes} bytes)"
    if request.content_length is not None and request.content_length > gw.max_body_bytes:
        return _refuse_early(gw, rid, ErrorCode.TOO_LARGE, too_large)
    try:
        data = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past the limit
        return _refuse_early(gw, rid, ErrorCode.TOO_LARGE, too_large)
    try:
        accepted = await gw.intake.submit(data, principal.party, request_id=rid)
    except Refused as refusal:
        response = error_response(refusal.code, refusal.detail, rid, refusal.errors)
        _outcome(logging.INFO, "refused", rid, response.status, code=refusal.code.value)
        return response
    except Unavailable as exc:
        response = error_response(
            ErrorCode.UNAVAILABLE, f"the hub's {exc.what} is unavailable; retry later", rid
        )
        _outcome(logging.WARNING, "unavailable", rid, response.status, what=exc.what)
        return response
    b = accepted.bericht
    body = {
        "message_id": accepted.message_id,
        "standard": b.type.standaard.value,
        "release": b.release,
        "message": b.type.naam,
        "afzender": b.afzender,
        "ontvanger": b.ontvanger,
        "receiver": str(accepted.receiver),
        "status_url": f"/v1/berichten/{accepted.message_id}",
        "duplicate": accepted.duplicate,
    }
    # A duplicate is answered 200 with the original message_id: it was accepted (and forwarded) before.
    status = 200 if accepted.duplicate else 202
    _outcome(
        logging.INFO,
        "duplicate" if accepted.duplicate else "accepted",
        rid,
        status,
        message_id=accepted.message_id,
        standard=b.type.standaard.value,
        message=b.type.naam,
        receiver_kind=accepted.receiver.kind.value,
    )
    return web.json_response(body, status=status)


async def get_bericht(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    rid = request_id(request)
    try:
        principal = await _principal(request)
        if principal is None:
            return error_response(ErrorCode.UNAUTHENTICATED, "a valid bearer token is required", rid)
        message_id = request.match_info["message_id"]
        stored = await gw.store.get(message_id) if _is_uuid(message_id) else None
        # Others' messages are answered exactly like missing ones: existence is not disclosed.
        if stored is None or not (
            principal.admin or principal.is_party(stored.afzender) or principal.is_party(stored.receiver)
        ):
            return error_response(ErrorCode.NOT_FOUND, "no such message for this party", rid)
        events = await gw.store.events(message_id)
        conversation = await gw.store.conversation(stored.conversation_id)
    except StoreUnavailable:
        return error_response(ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry later", rid)
    heen = next((b for b in conversation if b.message_id == stored.conversation_id), None)
    return web.json_response(
        {
            "message_id": stored.message_id,
            "conversation_id": stored.conversation_id,
            "status": stored.status.value,
            "standard": stored.standaard,
            "release": stored.release,
            "message": stored.berichttype,
            "afzender": str(stored.afzender),
            "ontvanger": stored.ontvanger,
            "receiver": str(stored.receiver),
            "identificatie": stored.identificatie,
            "dagtekening": stored.dagtekening.isoformat(),
            "answers_message_id": stored.answers_message_id,
            "size": stored.size,
            "sha256": stored.sha256,
            "received_at": stored.received_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
            "delivered_at": _iso(stored.delivered_at),
            "attempts": stored.attempts,
            "last_error": stored.last_error,
            "body_deleted_at": _iso(stored.body_purged_at),
            "conversation": {
                "answer_due": heen.answer_due.isoformat() if heen and heen.answer_due else None,
                "answered_at": _iso(heen.answered_at) if heen else None,
                "overdue": bool(heen and _overdue(heen, gw.today())),
                "berichten": [
                    {
                        "message_id": b.message_id,
                        "message": b.berichttype,
                        "afzender": str(b.afzender),
                        "receiver": str(b.receiver),
                        "status": b.status.value,
                        "received_at": b.received_at.isoformat(),
                        "delivered_at": _iso(b.delivered_at),
                        "retourcodes": list(b.retourcodes),
                    }
                    for b in conversation
                    # Each party sees the messages of the conversation it sends or receives.
                    if principal.admin or principal.party in (b.afzender, b.receiver)
                ],
            },
            "events": [
                {"seq": e.seq, "at": e.at.isoformat(), "event": e.kind, "detail": e.detail} for e in events
            ],
        }
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    checks = await request.app[GATEWAY].ready()
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    render = request.app[GATEWAY].metrics
    if render is None:
        raise web.HTTPNotFound()
    body, content_type = await render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def reload_routes(request: web.Request) -> web.StreamResponse:
    rid = request_id(request)
    principal = await _principal(request)
    if principal is None:
        return error_response(ErrorCode.UNAUTHENTICATED, "a valid bearer token is required", rid)
    if not principal.admin:
        return error_response(ErrorCode.FORBIDDEN, "reloading the routing rules needs the admin role", rid)
    result = await request.app[GATEWAY].reload_rules()
    return web.json_response(result, status=200 if result.get("ok") else 422)


async def openapi(request: web.Request) -> web.StreamResponse:
    from hub.entrypoints.openapi import document

    return web.json_response(document())


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _overdue(heen: StoredBericht, today: date) -> bool:
    return heen.answer_due is not None and heen.answered_at is None and heen.answer_due < today


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/berichten", post_bericht)
    app.router.add_get("/v1/berichten/{message_id}", get_bericht)
    app.router.add_post("/v1/admin/routes/reload", reload_routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/openapi.json", openapi)
