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
from hub.domain.parties import PartyRef
from hub.domain.vandaag import vandaag
from hub.entrypoints.access import ACCESS, REQUEST_ID, principal, refuse, request_id, unauthenticated
from hub.entrypoints.http_errors import error_response
from hub.entrypoints.logs import fields
from hub.service.intake import Intake, Refused, Unavailable
from hub.service.observe import IntakeObserver, NullIntakeObserver
from hub.service.ports import AuditEvent, HubStore, StoredBericht, StoreUnavailable

log = logging.getLogger("hub.gateway")

_XML_TYPES = {"application/xml", "text/xml"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass
class Gateway:
    intake: Intake
    store: HubStore
    max_body_bytes: int
    ready: Callable[[], Awaitable[dict[str, str]]]
    reload_rules: Callable[[], Awaitable[dict[str, Any]]]
    observer: IntakeObserver = field(default_factory=NullIntakeObserver)
    # GET /metrics: (body, content type) for the scraper's Accept header; None: no metrics (404)
    metrics: Callable[[str | None], Awaitable[tuple[bytes, str]]] | None = None
    today: Callable[[], date] = vandaag
    body_read_timeout: float = 60.0  # the whole body must arrive within this (HUB_BODY_READ_TIMEOUT)


GATEWAY = web.AppKey("gateway", Gateway)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
__all__ = ["GATEWAY", "REQUEST_ID", "Gateway", "add_routes", "error_middleware", "request_id"]


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


def _refuse_early(gw: Gateway, rid: str, code: ErrorCode, detail: str) -> web.StreamResponse:
    """A refusal before the intake (auth, media type, size): counted and logged like the others."""
    response = error_response(code, detail, rid)
    _count_early(gw, rid, code, response.status)
    return response


def _count_early(gw: Gateway, rid: str, code: ErrorCode, status: int) -> None:
    if code is ErrorCode.UNAVAILABLE:
        gw.observer.unavailable("database")
        _outcome(logging.WARNING, "unavailable", rid, status, what="database")
    else:
        gw.observer.refused(code, None, None)
        _outcome(logging.INFO, "refused", rid, status, code=code.value)


def _outcome(level: int, event: str, rid: str, status: int, **more: str | bool | None) -> None:
    """The one log line per message outcome: structured fields, never a body or a value from it."""
    log.log(level, event, extra=fields(event=event, request_id=rid, status=status, **more))


async def post_bericht(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    rid = request_id(request)
    gw.observer.received()
    try:
        caller = await principal(request)
    except StoreUnavailable:
        return _refuse_early(gw, rid, ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry later")
    if caller is None:
        _count_early(gw, rid, ErrorCode.UNAUTHENTICATED, 401)
        return await unauthenticated(request, rid)
    if caller.party is None:
        _count_early(gw, rid, ErrorCode.FORBIDDEN, 403)
        return await refuse(request, rid, ErrorCode.FORBIDDEN, "the operator cannot send messages")
    sender = caller.party
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
    budget = request.app[ACCESS].budget
    reserved = 0
    try:  # every way out releases what was reserved: refusals, timeouts, a sender that goes away
        try:
            # The cap on request bytes in flight (HUB_MAX_INFLIGHT_BYTES), before the body is read: a
            # declared length is reserved whole; a chunked body is counted as it arrives. The whole
            # body must arrive within HUB_BODY_READ_TIMEOUT: a sender that trickles (or stops) does not
            # hold its share of the cap, a handler and a connection for ever.
            async with asyncio.timeout(gw.body_read_timeout):
                if request.content_length is not None:
                    if not budget.try_reserve(request.content_length):
                        return _over_capacity(gw, rid)
                    reserved = request.content_length
                    try:
                        data = await request.read()  # bounded by the app's client_max_size
                    except web.HTTPRequestEntityTooLarge:
                        return _refuse_early(gw, rid, ErrorCode.TOO_LARGE, too_large)
                else:
                    chunks: list[bytes] = []
                    async for chunk in request.content.iter_any():
                        if reserved + len(chunk) > gw.max_body_bytes:
                            return _refuse_early(gw, rid, ErrorCode.TOO_LARGE, too_large)
                        if not budget.try_reserve(len(chunk)):
                            return _over_capacity(gw, rid)
                        reserved += len(chunk)
                        chunks.append(chunk)
                    data = b"".join(chunks)
                    del chunks
        except TimeoutError:
            response = _refuse_early(
                gw,
                rid,
                ErrorCode.REQUEST_TIMEOUT,
                f"the body did not arrive within {gw.body_read_timeout:g} s",
            )
            response.force_close()  # the rest of the body may still be on its way: drop the connection
            return response
        return await _submit(gw, rid, data, sender)
    finally:
        budget.release(reserved)


def _over_capacity(gw: Gateway, rid: str) -> web.StreamResponse:
    gw.observer.unavailable("capacity")
    _outcome(logging.WARNING, "unavailable", rid, 503, what="capacity")
    response = error_response(
        ErrorCode.UNAVAILABLE, "the hub is receiving too much at once; retry later", rid
    )
    response.force_close()  # the body stays unread: do not keep the connection
    return response


async def _submit(gw: Gateway, rid: str, data: bytes, sender: PartyRef) -> web.StreamResponse:
    try:
        accepted = await gw.intake.submit(data, sender, request_id=rid)
    except Refused as refusal:
        response = error_response(refusal.code, refusal.detail, rid, refusal.errors)
        _outcome(logging.INFO, "refused", rid, response.status, code=refusal.code.value)
        return response
    except Unavailable as exc:
        response = error_response(ErrorCode.UNAVAILABLE, exc.explain(), rid)
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


def _submitted_by(events: list[AuditEvent]) -> str | None:
    """The party that sent the message on its afzender's behalf, if one did (sends_for.csv)."""
    received = next((e for e in events if e.kind == "received"), None)
    who = received.detail.get("submitted_by") if received is not None else None
    return who if isinstance(who, str) else None


async def get_bericht(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    rid = request_id(request)
    try:
        caller = await principal(request)
        if caller is None:
            return await unauthenticated(request, rid)
        message_id = request.match_info["message_id"]
        stored = await gw.store.get(message_id) if _is_uuid(message_id) else None
        events: list[AuditEvent] | None = None
        allowed = stored is not None and (
            caller.admin or caller.is_party(stored.afzender) or caller.is_party(stored.receiver)
        )
        if stored is not None and not allowed and caller.party is not None:
            events = await gw.store.events(message_id)  # did the caller send it on the afzender's behalf?
            allowed = _submitted_by(events) == str(caller.party)
        # Others' messages are answered exactly like missing ones: existence is not disclosed.
        if stored is None or not allowed:
            return await refuse(
                request, rid, ErrorCode.NOT_FOUND, "no such message for this party", party=caller.party
            )
        if events is None:
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
                    if caller.admin or caller.party in (b.afzender, b.receiver)
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
    try:
        caller = await principal(request)
    except StoreUnavailable:
        return error_response(ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry later", rid)
    if caller is None:
        return await unauthenticated(request, rid)
    if not caller.admin:
        return await refuse(
            request,
            rid,
            ErrorCode.FORBIDDEN,
            "reloading the routing rules needs the admin role",
            party=caller.party,
        )
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
