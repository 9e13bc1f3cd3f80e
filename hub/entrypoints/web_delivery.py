"""Delivery over HTTP: the receiver's mailbox, and the admin calls for dead letters and replay."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from aiohttp import web

from hub.domain.directory import Kanaal
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyRef
from hub.domain.routing import RoutingRules
from hub.domain.vandaag import vandaag
from hub.entrypoints.access import principal, refuse, request_id, unauthenticated
from hub.entrypoints.commands.deadletters import dead_letter_json
from hub.entrypoints.http_errors import error_response
from hub.service.observe import DeliveryObserver, NullDeliveryObserver
from hub.service.ports import BerichtStatus, BodyUnreadable, HubStore, Publisher, StoreUnavailable
from hub.service.replay import replay

log = logging.getLogger("hub.gateway")


@dataclass
class DeliveryApi:
    store: HubStore
    rules: Callable[[], RoutingRules]
    publisher: Publisher
    observer: DeliveryObserver
    today: Callable[[], date] = vandaag


DELIVERY = web.AppKey("delivery", DeliveryApi)
_MAX_PAGE = 500


def _unavailable(rid: str) -> web.Response:
    return error_response(ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry later", rid)


async def _party(request: web.Request) -> PartyRef | web.Response:
    rid = request_id(request)
    caller = await principal(request)
    if caller is None:
        return await unauthenticated(request, rid)
    if caller.party is None:
        return await refuse(
            request, rid, ErrorCode.FORBIDDEN, "the mailbox belongs to a party; the operator has none"
        )
    return caller.party


async def list_mailbox(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    try:
        party = await _party(request)
        if isinstance(party, web.Response):
            return party
        try:
            limit = min(_MAX_PAGE, max(1, int(request.query.get("limit", "100"))))
        except ValueError:
            return error_response(ErrorCode.BAD_REQUEST, "limit must be a number", rid)
        # Messages still in the queue belong in the mailbox too when the receiver fetches: no waiting
        # for the worker's hand-off.
        fetches = api.rules().delivery(party, api.today()).kanaal is Kanaal.MAILBOX
        try:
            page = await api.store.mailbox(
                party, include_forwarded=fetches, limit=limit, after=request.query.get("after")
            )
        except ValueError:
            return error_response(ErrorCode.BAD_REQUEST, "not a cursor this hub gave out", rid)
    except StoreUnavailable:
        return _unavailable(rid)
    return web.json_response(
        {
            "berichten": [
                {
                    "message_id": b.message_id,
                    "conversation_id": b.conversation_id,
                    "standard": b.standaard,
                    "message": b.berichttype,
                    "afzender": str(b.afzender),
                    "received_at": b.received_at.isoformat(),
                    "size": b.size,
                    "href": f"/v1/mailbox/{b.message_id}",
                }
                for b in page.berichten
            ],
            "next": page.next_cursor,
        }
    )


async def fetch_from_mailbox(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    message_id = request.match_info["message_id"]
    try:
        party = await _party(request)
        if isinstance(party, web.Response):
            return party
        stored = await api.store.get(message_id)
        if stored is None or stored.receiver != party or stored.status is BerichtStatus.RECEIVED:
            return await refuse(
                request, rid, ErrorCode.NOT_FOUND, "no such message in this mailbox", party=party
            )
        try:
            body = await api.store.body(message_id)
        except BodyUnreadable as exc:  # a key missing from HUB_BODY_KEYS: ops must fix it; retry later
            log.error("%s", exc)
            return _unavailable(rid)
        if body is None:
            return error_response(ErrorCode.NOT_FOUND, "the body was deleted by retention", rid, status=410)
        await api.store.add_event(message_id, "mailbox_fetched", {})
    except StoreUnavailable:
        return _unavailable(rid)
    return web.Response(
        body=body,
        content_type="application/xml",
        headers={
            "X-Message-Id": stored.message_id,
            "X-Conversation-Id": stored.conversation_id,
            "X-Bericht-Type": stored.berichttype,
            "X-Standaard": stored.standaard,
            "X-Delivery-Status": stored.status.value,
        },
    )


async def ack_mailbox(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    message_id = request.match_info["message_id"]
    try:
        party = await _party(request)
        if isinstance(party, web.Response):
            return party
        stored = await api.store.get(message_id)
        if stored is None or stored.receiver != party or stored.status is BerichtStatus.RECEIVED:
            return await refuse(
                request, rid, ErrorCode.NOT_FOUND, "no such message in this mailbox", party=party
            )
        acked = await api.store.mark_delivered(message_id, channel="mailbox", event="acked")
    except StoreUnavailable:
        return _unavailable(rid)
    if acked:
        api.observer.succeeded("mailbox", party.kind.value)
    # An ack of an acked message is fine (the first answer may have been lost): same answer.
    return web.json_response({"message_id": message_id, "acked": True, "already": not acked})


async def _admin(request: web.Request) -> web.Response | None:
    rid = request_id(request)
    try:
        caller = await principal(request)
    except StoreUnavailable:
        return _unavailable(rid)
    if caller is None:
        return await unauthenticated(request, rid)
    if not caller.admin:
        return await refuse(
            request, rid, ErrorCode.FORBIDDEN, "this call needs the admin role", party=caller.party
        )
    return None


async def list_dead_letters(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    if (refused := await _admin(request)) is not None:
        return refused
    try:
        receiver = PartyRef.parse(request.query["receiver"]) if "receiver" in request.query else None
        limit = min(_MAX_PAGE, max(1, int(request.query.get("limit", "100"))))
    except ValueError as exc:
        return error_response(ErrorCode.BAD_REQUEST, f"bad query: {exc}", rid)
    try:
        found = await api.store.dead_letters(limit=limit, receiver=receiver)
    except StoreUnavailable:
        return _unavailable(rid)
    return web.json_response({"dead_letters": [dead_letter_json(b) for b in found]})


async def replay_messages(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    if (refused := await _admin(request)) is not None:
        return refused
    try:
        payload: Any = await request.json()
        ids = payload["message_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not 0 < len(ids) <= 1000:
            raise ValueError
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        return error_response(
            ErrorCode.BAD_REQUEST, 'expected {"message_ids": ["...", ...]} (1 to 1000 ids)', rid
        )
    try:
        results = [await replay(i, store=api.store, publisher=api.publisher, by=f"admin:{rid}") for i in ids]
    except StoreUnavailable:
        return _unavailable(rid)
    body = {"results": [{"message_id": r.message_id, "replayed": r.ok, "detail": r.detail} for r in results]}
    return web.json_response(body, status=200 if all(r.ok for r in results) else 207)


async def list_overdue(request: web.Request) -> web.StreamResponse:
    api, rid = request.app[DELIVERY], request_id(request)
    if (refused := await _admin(request)) is not None:
        return refused
    try:
        found = await api.store.overdue(api.today(), limit=_MAX_PAGE)
    except StoreUnavailable:
        return _unavailable(rid)
    return web.json_response(
        {
            "overdue": [
                {
                    "message_id": b.message_id,
                    "message": b.berichttype,
                    "afzender": str(b.afzender),
                    "receiver": str(b.receiver),
                    "answer_due": b.answer_due.isoformat() if b.answer_due else None,
                }
                for b in found
            ]
        }
    )


def add_delivery_routes(app: web.Application) -> None:
    app.router.add_get("/v1/mailbox", list_mailbox)
    app.router.add_get("/v1/mailbox/{message_id}", fetch_from_mailbox)
    app.router.add_post("/v1/mailbox/{message_id}/ack", ack_mailbox)
    app.router.add_get("/v1/admin/deadletters", list_dead_letters)
    app.router.add_post("/v1/admin/replay", replay_messages)
    app.router.add_get("/v1/admin/overdue", list_overdue)


def delivery_api(
    store: HubStore,
    rules: Callable[[], RoutingRules],
    publisher: Publisher,
    observer: DeliveryObserver | None = None,
) -> DeliveryApi:
    return DeliveryApi(store, rules, publisher, observer or NullDeliveryObserver())
