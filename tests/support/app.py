"""The real aiohttp app over in-memory fakes of the stores and the broker, for gateway unit tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from functools import cache

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.adapters.metrics import HubMetrics
from hub.adapters.routing_files import RulesHolder
from hub.bootstrap import Components, create_app
from hub.domain.catalogue import CATALOGUE
from hub.domain.directory import Party
from hub.domain.parties import PartyRef
from hub.service.intake import Intake
from hub.settings import PROJECT_ROOT, Settings
from hub.validation.registry import SchemaRegistry
from hub.validation.validator import Validator
from tests.support.berichten import example, with_header
from tests.support.fakes import FakeAuditStore, FakePartyStore, FakePublisher

TODAY = date(2026, 1, 6)


@dataclass
class FakeApp:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    store: FakeAuditStore
    publisher: FakePublisher
    parties: FakePartyStore


class _NoneRegistered:
    async def registered(self, ref: PartyRef) -> Party | None:
        return None


@cache
def _registry(releases: str) -> SchemaRegistry:
    return SchemaRegistry.load(releases, CATALOGUE)  # compiled once per test session


@asynccontextmanager
async def fake_app(settings: Settings, metrics: HubMetrics | None = None) -> AsyncIterator[FakeApp]:
    """The app as `hub serve` builds it, with the real validator and routing rules, fake I/O."""
    registry = _registry(str(settings.schema_releases))
    validator = Validator(registry, max_bytes=settings.max_body_bytes)
    rules = RulesHolder.load(PROJECT_ROOT / "routing_rules")
    store, publisher, parties = FakeAuditStore(), FakePublisher(), FakePartyStore()
    intake = Intake(
        validator=validator,
        rules=lambda: rules.current,
        store=store,
        publisher=publisher,
        parties=_NoneRegistered(),
        today=lambda: TODAY,
        observer=metrics,
    )
    components = Components(settings, registry, validator, rules, store, parties, publisher, intake, metrics)
    app = create_app(settings, components=components)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield FakeApp(client, app, store, publisher, parties)
    finally:
        await client.close()


def wmo301(afzender: str = "0363", ontvanger: str = "12345678", ident: str | None = None) -> bytes:
    """A valid WMO301 from our example with a fresh Identificatie."""
    return with_header(
        example("iwmo-3.2", "WMO301"),
        afzender=afzender,
        ontvanger=ontvanger,
        identificatie=ident or uuid.uuid4().hex[:12],
        dagtekening=date(2026, 1, 5),
    )
