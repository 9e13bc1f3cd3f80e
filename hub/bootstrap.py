"""The composition root: the one place where adapters are built and wired into the service layer.

Nothing is built at import time. `create_app` returns an aiohttp application whose cleanup context
opens the database, the broker, the schemas and the routing rules at start-up and closes them at
shutdown; tests pass their own parts through `overrides`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub.adapters.broker import AmqpPublisher, Topology
from hub.adapters.db import create_audit_store, create_party_store
from hub.adapters.routing_files import RulesHolder, install_sighup_reload
from hub.domain.catalogue import CATALOGUE
from hub.domain.directory import Party
from hub.domain.parties import PartyRef
from hub.entrypoints.web import GATEWAY, Gateway, add_routes, error_middleware
from hub.service.auth import TokenAuthenticator
from hub.service.intake import Intake
from hub.service.ports import AuditStore, BrokerUnavailable, PartyStore, Publisher
from hub.settings import Settings
from hub.validation.registry import SchemaRegistry
from hub.validation.validator import Validator

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    registry: SchemaRegistry
    validator: Validator
    rules: RulesHolder
    store: AuditStore
    parties: PartyStore
    publisher: Publisher
    intake: Intake


class _RegisteredParties:
    """Run-time registered aanbieders (hub parties add), cached briefly; adapts PartyStore for the intake."""

    def __init__(self, store: PartyStore, ttl: float = 5.0) -> None:
        self._store = store
        self._ttl = ttl
        self._cache: dict[PartyRef, tuple[float, Party | None]] = {}

    async def registered(self, ref: PartyRef) -> Party | None:
        now = time.monotonic()
        hit = self._cache.get(ref)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._store.get_party(ref)
        party = Party(ref=ref, naam=row.naam) if row is not None else None
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[ref] = (now + self._ttl, party)
        return party


@asynccontextmanager
async def build_components(settings: Settings) -> AsyncIterator[Components]:
    async with AsyncExitStack() as stack:
        registry = SchemaRegistry.load(settings.schema_releases, CATALOGUE)
        validator = Validator(registry, max_bytes=settings.max_body_bytes)
        rules = RulesHolder.load(settings.routing_rules)
        store = await create_audit_store(settings.database_url)
        stack.push_async_callback(store.close)
        parties = await create_party_store(settings.database_url)
        stack.push_async_callback(parties.close)
        publisher = AmqpPublisher(
            settings.amqp_url,
            Topology(
                exchange=settings.amqp_exchange,
                queue_prefix=settings.amqp_queue_prefix,
                dead_letter_exchange=f"{settings.amqp_exchange}.dlx",
                dead_letter_queue=f"{settings.amqp_exchange}.deadletter",
                delivery_limit=settings.delivery_limit,
            ),
        )
        try:
            await publisher.start()
        except BrokerUnavailable:
            log.warning("RabbitMQ is not reachable at start-up; messages get 503 until it is")
            publisher.start_in_background()
        stack.push_async_callback(publisher.close)
        executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="validate")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        intake = Intake(
            validator=validator,
            rules=lambda: rules.current,
            store=store,
            publisher=publisher,
            parties=_RegisteredParties(parties),
            executor=executor,
            require_known_conversation=settings.require_known_conversation,
        )
        yield Components(settings, registry, validator, rules, store, parties, publisher, intake)


def create_app(settings: Settings, *, components: Components | None = None) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes + 1, middlewares=[error_middleware])
    add_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if components is None:
                c = await stack.enter_async_context(build_components(settings))
            else:
                c = components
            app[GATEWAY] = _gateway(c)
            loop = asyncio.get_running_loop()
            install_sighup_reload(loop, c.rules, _log_reload)
            yield

    app.cleanup_ctx.append(lifecycle)
    return app


def _gateway(c: Components) -> Gateway:
    admin = c.settings.admin_token
    authenticator = TokenAuthenticator(
        c.parties.party_for_token,
        admin_token_sha256=hashlib.sha256(admin.encode()).hexdigest() if admin else None,
    )

    async def ready() -> dict[str, str]:
        checks: dict[str, str] = {"schemas": "ok", "rules": "ok"}
        try:
            await asyncio.wait_for(c.store.ping(), 2.0)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not ready"; say which kind
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await c.publisher.ping()
            checks["rabbitmq"] = "ok"
        except BrokerUnavailable as exc:
            checks["rabbitmq"] = f"unavailable: {exc}"
        return checks

    async def reload_rules() -> dict[str, Any]:
        result = c.rules.reload()
        _log_reload(result)
        return {
            "ok": result.ok,
            "version": c.rules.current.version,
            "errors": [str(e) for e in result.errors],
        }

    return Gateway(
        intake=c.intake,
        store=c.store,
        authenticator=authenticator,
        max_body_bytes=c.settings.max_body_bytes,
        ready=ready,
        reload_rules=reload_rules,
    )


def _log_reload(result: Any) -> None:
    if result.ok:
        log.info("routing rules reloaded: version %s", result.version)
    else:
        log.error("routing rules reload refused, old rules stay: %d errors", len(result.errors))
