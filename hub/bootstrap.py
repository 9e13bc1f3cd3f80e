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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hub.adapters.broker import AmqpPublisher, Topology
from hub.adapters.db import create_audit_store, create_party_store
from hub.adapters.db.audit_store import SqlAlchemyAuditStore
from hub.adapters.db.body_crypto import BodyCipher
from hub.adapters.db.engine import create_engine
from hub.adapters.db.stats import SqlStats
from hub.adapters.delivery_worker import DeliveryWorker
from hub.adapters.metrics import HubMetrics, StatsCollector
from hub.adapters.push import HttpPusher
from hub.adapters.routing_files import ReloadResult, RulesHolder, install_sighup_reload
from hub.domain.catalogue import CATALOGUE
from hub.domain.directory import LimitOverride, Party
from hub.domain.parties import PartyRef
from hub.domain.retry import RetryPolicy
from hub.domain.routing import RoutingRules
from hub.entrypoints.access import ACCESS, Access, limits_middleware
from hub.entrypoints.web import GATEWAY, Gateway, add_routes, error_middleware
from hub.entrypoints.web_delivery import DELIVERY, add_delivery_routes, delivery_api
from hub.service.auth import TokenAuthenticator
from hub.service.delivery import Delivery
from hub.service.intake import Intake
from hub.service.limits import ByteBudget, ConcurrencyLimiter, RateLimiter
from hub.service.observe import DeliveryObserver, NullIntakeObserver
from hub.service.ports import BrokerUnavailable, HubStore, PartyStore, Publisher
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
    store: HubStore
    parties: PartyStore
    publisher: Publisher
    intake: Intake
    metrics: HubMetrics | None = None  # None: no GET /metrics (tests that build their own parts)


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


def body_cipher_of(settings: Settings) -> BodyCipher:
    """The key(s) of HUB_BODY_KEYS; raises BodyKeysInvalid (a ValueError) when it cannot be read."""
    return BodyCipher.from_setting(settings.body_keys)


def topology_of(settings: Settings) -> Topology:
    return Topology(
        exchange=settings.amqp_exchange,
        queue_prefix=settings.amqp_queue_prefix,
        dead_letter_exchange=f"{settings.amqp_exchange}.dlx",
        dead_letter_queue=f"{settings.amqp_exchange}.deadletter",
        delivery_limit=settings.delivery_limit,
    )


def retry_policy_of(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.retry_base_seconds,
        cap_seconds=settings.retry_cap_seconds,
        max_attempts=settings.retry_max_attempts,
        max_age_seconds=settings.retry_max_age_hours * 3600,
    )


def retry_policy_for(default: RetryPolicy, rules: RoutingRules, receiver: PartyRef) -> RetryPolicy:
    """The hub's retry policy with a receiver's own bounds from routing_rules/retry.csv."""
    override = rules.retry_override(receiver)
    if override is None:
        return default
    return default.with_override(override.max_attempts, override.max_age_hours)


@dataclass
class WorkerComponents:
    settings: Settings
    rules: RulesHolder
    store: SqlAlchemyAuditStore
    worker: DeliveryWorker


@asynccontextmanager
async def build_worker(
    settings: Settings, observer: DeliveryObserver | None = None
) -> AsyncIterator[WorkerComponents]:
    """The delivery worker (`hub worker`): consumes receiver queues, pushes, retries, dead-letters."""
    async with AsyncExitStack() as stack:
        rules = RulesHolder.load(settings.routing_rules)
        store = await create_audit_store(settings.database_url, cipher=body_cipher_of(settings))
        stack.push_async_callback(store.close)
        pusher = HttpPusher(limit_per_host=settings.push_connections)
        await pusher.start()
        stack.push_async_callback(pusher.close)
        policy = retry_policy_of(settings)
        delivery = Delivery(
            store=store,
            stored=store.get,
            rules=lambda: rules.current,
            pusher=pusher,
            policy=lambda receiver: retry_policy_for(policy, rules.current, receiver),
            clock=time.time,
            observer=observer,
        )
        worker = DeliveryWorker(
            settings.amqp_url,
            topology_of(settings),
            delivery,
            store,
            lambda: rules.current,
            amqp_settle_after=settings.amqp_settle_seconds,
            prefetch=settings.worker_prefetch,
            observer=observer,
        )
        await worker.start()
        stack.push_async_callback(worker.stop)
        yield WorkerComponents(settings, rules, store, worker)


@asynccontextmanager
async def build_components(settings: Settings) -> AsyncIterator[Components]:
    async with AsyncExitStack() as stack:
        registry = SchemaRegistry.load(settings.schema_releases, CATALOGUE)
        validator = Validator(registry, max_bytes=settings.max_body_bytes)
        rules = RulesHolder.load(settings.routing_rules)
        store = await create_audit_store(settings.database_url, cipher=body_cipher_of(settings))
        stack.push_async_callback(store.close)
        parties = await create_party_store(settings.database_url)
        stack.push_async_callback(parties.close)
        publisher = AmqpPublisher(
            settings.amqp_url,
            topology_of(settings),
        )
        try:
            await publisher.start()
        except BrokerUnavailable:
            log.warning("RabbitMQ is not reachable at start-up; messages get 503 until it is")
            publisher.start_in_background()
        stack.push_async_callback(publisher.close)
        executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="validate")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        metrics = HubMetrics("gateway")
        metrics.rules_loaded(rules.current.version)
        # The hub-wide gauges read through an engine of their own (one connection): a slow stats
        # query never takes a connection the intake needs.
        stats_engine = create_engine(settings.database_url, pool_size=1)
        stack.push_async_callback(stats_engine.dispose)
        stats = SqlStats(stats_engine, CATALOGUE)
        dead_letter_queue = publisher.topology.dead_letter_queue
        metrics.add_stats(
            StatsCollector(stats.read, lambda: publisher.queue_depth(dead_letter_queue), stats.heen_types)
        )
        intake = Intake(
            validator=validator,
            rules=lambda: rules.current,
            store=store,
            publisher=publisher,
            parties=_RegisteredParties(parties),
            executor=executor,
            require_known_conversation=settings.require_known_conversation,
            observer=metrics,
        )
        stack.push_async_callback(intake.settle)  # runs before the store and the publisher close
        yield Components(settings, registry, validator, rules, store, parties, publisher, intake, metrics)


def create_app(settings: Settings, *, components: Components | None = None) -> web.Application:
    app = web.Application(
        client_max_size=settings.max_body_bytes + 1, middlewares=[error_middleware, limits_middleware]
    )
    add_routes(app)
    add_delivery_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if components is None:
                c = await stack.enter_async_context(build_components(settings))
            else:
                c = components
            app[ACCESS] = _access(c)
            app[GATEWAY] = _gateway(c)
            app[DELIVERY] = delivery_api(c.store, lambda: c.rules.current, c.publisher, c.metrics)
            if c.metrics is not None:
                stack.callback(c.metrics.watch_gc())
            loop = asyncio.get_running_loop()
            install_sighup_reload(loop, c.rules, _reload_reporter(c.metrics))
            yield

    app.cleanup_ctx.append(lifecycle)
    return app


def _access(c: Components) -> Access:
    s = c.settings
    admin = s.admin_token
    authenticator = TokenAuthenticator(
        c.parties.party_for_token,
        admin_token_sha256=hashlib.sha256(admin.encode()).hexdigest() if admin else None,
        certificates=lambda oin, fingerprint, on: c.rules.current.certificate(oin, fingerprint, on),
        bearer_tokens=s.bearer_tokens,
    )

    def overrides(ref: PartyRef) -> LimitOverride | None:
        return c.rules.current.limit_override(ref)

    return Access(
        authenticator=authenticator,
        store=c.store,
        rate=RateLimiter(s.rate_per_second, s.rate_burst, overrides=overrides),
        concurrency=ConcurrencyLimiter(s.max_concurrent_per_party, overrides=overrides),
        budget=ByteBudget(s.max_inflight_bytes),
        observer=c.metrics if c.metrics is not None else NullIntakeObserver(),
    )


def _gateway(c: Components) -> Gateway:
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

    report_reload = _reload_reporter(c.metrics)

    async def reload_rules() -> dict[str, Any]:
        result = c.rules.reload()
        report_reload(result)
        return {
            "ok": result.ok,
            "version": c.rules.current.version,
            "errors": [str(e) for e in result.errors],
        }

    return Gateway(
        intake=c.intake,
        store=c.store,
        max_body_bytes=c.settings.max_body_bytes,
        body_read_timeout=c.settings.body_read_timeout,
        ready=ready,
        reload_rules=reload_rules,
        observer=c.metrics if c.metrics is not None else NullIntakeObserver(),
        metrics=c.metrics.exposition if c.metrics is not None else None,
    )


def _reload_reporter(metrics: HubMetrics | None) -> Callable[[ReloadResult], None]:
    def report(result: ReloadResult) -> None:
        _log_reload(result)
        if metrics is not None:
            metrics.rules_reloaded(result.ok, result.version)

    return report


def _log_reload(result: ReloadResult) -> None:
    if result.ok:
        log.info("routing rules reloaded: version %s", result.version)
    else:
        log.error("routing rules reload refused, old rules stay: %d errors", len(result.errors))
