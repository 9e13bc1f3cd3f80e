"""Metrics without servers: the observers through the real gateway over fakes, the scrape-time stats
collector's caching and timeouts, the exposition formats, and the structured outcome log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hub.adapters.db.stats import Backlog, HubStats
from hub.adapters.metrics import HubMetrics, StatsCollector
from hub.adapters.routing_files import load_rules
from hub.domain.catalogue import CATALOGUE, Standaard
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyKind, PartyRef
from hub.entrypoints.logs import JsonFormatter
from hub.settings import PROJECT_ROOT, Settings
from tests.support.app import fake_app, wmo301
from tests.support.fakes import FakePublisher
from tests.support.prom import names_and_labels

GEMEENTE = PartyRef(PartyKind.GEMEENTE, "0363")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


@dataclass
class Rig:
    client: TestClient[web.Request, web.Application]
    metrics: HubMetrics
    publisher: FakePublisher
    token: str

    async def scrape(self) -> str:
        r = await self.client.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await r.text()

    async def post(self, body: bytes, **headers: str) -> int:
        h = {"Content-Type": "application/xml", "Authorization": f"Bearer {self.token}"} | headers
        r = await self.client.post("/v1/berichten", data=body, headers=h)
        return r.status


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    settings = Settings(max_body_bytes=100_000, admin_token="admin-secret")
    metrics = HubMetrics("gateway")
    async with fake_app(settings, metrics) as f:
        metrics.rules_loaded(load_rules(PROJECT_ROOT / "routing_rules").version)
        token = await f.parties.create_token(GEMEENTE, "test")
        yield Rig(f.client, metrics, f.publisher, token)


async def test_outcomes_move_their_counters(rig: Rig) -> None:
    body = wmo301()
    assert await rig.post(body) == 202
    assert await rig.post(body) == 200  # duplicate
    assert await rig.post(b"not xml") == 400
    assert await rig.post(body.replace(b"<wmo301:Bsn>", b"<wmo301:Bsn>x")) == 422
    assert await rig.post(wmo301(), Authorization="Bearer nope") == 401
    assert await rig.post(wmo301(), **{"Content-Type": "application/json"}) == 415
    rig.publisher.down = True
    assert await rig.post(wmo301()) == 503

    text = await rig.scrape()
    assert value(text, "hub_messages_received_total") == 7
    assert (
        value(
            text, "hub_messages_accepted_total", standard="iWmo", message="WMO301", receiver_kind="aanbieder"
        )
        == 1
    )
    assert value(text, "hub_messages_duplicate_total", standard="iWmo", message="WMO301") == 1
    refused = {
        (dict(labels)["code"], dict(labels)["standard"], dict(labels)["message"]): v
        for (name, labels), v in samples(text).items()
        if name == "hub_messages_refused_total"
    }
    assert refused == {
        ("not_well_formed", "unknown", "unknown"): 1,
        ("schema_invalid", "iWmo", "WMO301"): 1,
        ("unauthenticated", "unknown", "unknown"): 1,
        ("unsupported_media_type", "unknown", "unknown"): 1,
    }
    assert value(text, "hub_messages_unavailable_total", what="broker") == 1
    assert value(text, "hub_broker_publishes_total", outcome="confirmed") == 1
    assert value(text, "hub_broker_publishes_total", outcome="failed") == 1
    # Validation ran for the 4 posts that got past the gateway's checks and the 503 one.
    assert value(text, "hub_validation_duration_seconds_count", standard="iWmo", outcome="valid") == 3
    assert value(text, "hub_validation_duration_seconds_count", standard="iWmo", outcome="invalid") == 1
    assert value(text, "hub_validation_duration_seconds_count", standard="unknown", outcome="invalid") == 1
    # Only the one new acceptance is timed, and it took more than nothing.
    assert value(text, "hub_acceptance_duration_seconds_count") == 1
    assert 0 < value(text, "hub_acceptance_duration_seconds_sum") < 5
    # Buckets resolve milliseconds.
    assert ("hub_acceptance_duration_seconds_bucket", frozenset({("le", "0.001")})) in samples(text)


async def test_openmetrics_when_the_scraper_asks(rig: Rig) -> None:
    r = await rig.client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await r.text()
    assert text.rstrip().endswith("# EOF")
    assert "# TYPE hub_messages_refused counter" in text


async def test_labels_are_low_cardinality_only(rig: Rig) -> None:
    ident = uuid.uuid4().hex[:12]
    assert await rig.post(wmo301(ident=ident)) == 202
    text = await rig.scrape()
    words = names_and_labels(text)
    assert ident not in words and "12345678" not in words and "0363" not in words
    for (name, labels), _ in samples(text).items():
        if name.startswith("hub_"):
            assert {k for k, _ in labels} <= {
                "standard",
                "message",
                "receiver_kind",
                "code",
                "outcome",
                "what",
                "channel",
                "le",
                "version",
                "python",
                "component",
                "generation",  # 0, 1, 2
                "quantile",
            }, name


def test_two_apps_in_one_process_do_not_share_counters() -> None:
    a, b = HubMetrics("gateway"), HubMetrics("gateway")
    a.received()
    a.received()
    b.received()
    assert a.registry.get_sample_value("hub_messages_received_total") == 2
    assert b.registry.get_sample_value("hub_messages_received_total") == 1


async def test_delivery_observer_and_rules_reload() -> None:
    m = HubMetrics("worker")
    m.attempted("push", "aanbieder")
    m.attempted("push", "aanbieder")
    m.retried("push", "aanbieder")
    m.succeeded("push", "aanbieder", 0.02)
    m.dead_lettered("mailbox", "gemeente")
    m.rules_loaded("v1")
    m.rules_reloaded(False, "v1")
    text = (await m.exposition(None))[0].decode()
    assert value(text, "hub_deliveries_attempted_total", channel="push", receiver_kind="aanbieder") == 2
    assert value(text, "hub_deliveries_retried_total", channel="push", receiver_kind="aanbieder") == 1
    assert value(text, "hub_deliveries_succeeded_total", channel="push", receiver_kind="aanbieder") == 1
    assert value(text, "hub_deliveries_dead_lettered_total", channel="mailbox", receiver_kind="gemeente") == 1
    assert value(text, "hub_delivery_duration_seconds_count", channel="push") == 1
    assert value(text, "hub_routing_rules_last_reload_ok") == 0
    assert value(text, "hub_routing_rules_reloads_total", outcome="failed") == 1
    assert value(text, "hub_routing_rules_info", version="v1") == 1
    m.rules_reloaded(True, "v2")
    text = (await m.exposition(None))[0].decode()
    assert value(text, "hub_routing_rules_last_reload_ok") == 1
    assert ("hub_routing_rules_info", frozenset({("version", "v1")})) not in samples(text)
    assert value(text, "hub_routing_rules_info", version="v2") == 1


async def test_reload_through_the_admin_call_is_counted(rig: Rig) -> None:
    r = await rig.client.post("/v1/admin/routes/reload", headers={"Authorization": "Bearer admin-secret"})
    assert r.status == 200
    text = await rig.scrape()
    assert value(text, "hub_routing_rules_reloads_total", outcome="ok") == 1
    assert value(text, "hub_routing_rules_reloads_total", outcome="failed") == 0
    assert value(text, "hub_routing_rules_last_reload_ok") == 1


# -- the scrape-time stats collector ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


HEEN = [CATALOGUE.get(Standaard.IWMO, "WMO301")]


async def test_stats_are_read_at_most_every_max_age_seconds() -> None:
    reads: list[datetime] = []
    oldest = datetime.now(UTC) - timedelta(hours=2)

    async def read(now: datetime) -> HubStats:
        reads.append(now)
        return HubStats(
            backlog={"aanbieder": Backlog(3, oldest)},
            dead_lettered={"gemeente": 2},
            unforwarded=1,
            overdue={("iWmo", "WMO301"): 4},
        )

    async def dlq() -> int | None:
        return 5

    clock = Clock()
    m = HubMetrics("gateway")
    m.add_stats(StatsCollector(read, dlq, HEEN, max_age=5.0, clock=clock))
    text = (await m.exposition(None))[0].decode()
    await m.exposition(None)
    clock.now += 4.9
    await m.exposition(None)
    assert len(reads) == 1
    clock.now += 0.2
    await m.exposition(None)
    assert len(reads) == 2

    assert value(text, "hub_backlog_messages", receiver_kind="aanbieder") == 3
    assert value(text, "hub_backlog_messages", receiver_kind="gemeente") == 0
    assert 7190 < value(text, "hub_backlog_oldest_age_seconds", receiver_kind="aanbieder") < 7300
    assert value(text, "hub_dead_lettered_messages", receiver_kind="gemeente") == 2
    assert value(text, "hub_dead_letter_queue_messages") == 5
    assert value(text, "hub_unforwarded_messages") == 1
    assert value(text, "hub_overdue_conversations", standard="iWmo", message="WMO301") == 4
    assert value(text, "hub_stats_up") == 1


async def test_a_slow_database_never_hangs_metrics_and_a_failing_one_keeps_the_old_numbers() -> None:
    release = asyncio.Event()
    calls = 0

    async def read(now: datetime) -> HubStats:
        nonlocal calls
        calls += 1
        if calls == 2:
            await release.wait()  # the second read hangs until released
        if calls == 3:
            raise OSError("database gone")
        return HubStats(unforwarded=calls)

    clock = Clock()
    m = HubMetrics("gateway")
    m.add_stats(StatsCollector(read, None, HEEN, max_age=5.0, wait=0.05, clock=clock))
    assert value((await m.exposition(None))[0].decode(), "hub_unforwarded_messages") == 1

    clock.now += 10
    started = asyncio.get_running_loop().time()
    text = (await m.exposition(None))[0].decode()
    assert asyncio.get_running_loop().time() - started < 1.0
    assert value(text, "hub_stats_up") == 0 and value(text, "hub_unforwarded_messages") == 1
    # A second scrape while the read still hangs does not start another one.
    await m.exposition(None)
    assert calls == 2
    release.set()
    await asyncio.sleep(0.01)
    text = (await m.exposition(None))[0].decode()
    assert value(text, "hub_stats_up") == 1 and value(text, "hub_unforwarded_messages") == 2

    clock.now += 10
    text = (await m.exposition(None))[0].decode()
    assert calls == 3
    assert value(text, "hub_stats_up") == 0 and value(text, "hub_unforwarded_messages") == 2


# -- structured outcome logs ------------------------------------------------------------------------


async def test_one_structured_log_line_per_outcome(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hub.gateway")
    r = await rig.client.post(
        "/v1/berichten",
        data=wmo301(),
        headers={
            "Content-Type": "application/xml",
            "Authorization": f"Bearer {rig.token}",
            "X-Request-Id": "req-1",
        },
    )
    message_id = (await r.json())["message_id"]
    await rig.client.post(
        "/v1/berichten",
        data=b"<oops",
        headers={"Content-Type": "application/xml", "Authorization": "Bearer nope", "X-Request-Id": "req-2"},
    )
    lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records if rec.name == "hub.gateway"]
    assert [(x["event"], x["request_id"], x["status"]) for x in lines] == [
        ("accepted", "req-1", 202),
        ("refused", "req-2", 401),
    ]
    assert lines[0]["message_id"] == message_id
    assert (lines[0]["standard"], lines[0]["message"], lines[0]["receiver_kind"]) == (
        "iWmo",
        "WMO301",
        "aanbieder",
    )
    assert lines[1]["code"] == ErrorCode.UNAUTHENTICATED.value
    assert lines[0]["msg"] == "accepted" and lines[0]["level"] == "info"


def test_gc_pauses_are_timed_by_generation_until_unwatched() -> None:
    import gc

    metrics = HubMetrics("gateway")

    def count(generation: str) -> float:
        value = metrics.registry.get_sample_value("hub_gc_pause_seconds_count", {"generation": generation})
        return value or 0.0

    unwatch = metrics.watch_gc()
    try:
        gc.collect(2)
        gc.collect(0)
        assert count("2") == 1
        assert count("0") >= 1
    finally:
        unwatch()
    gc.collect(2)
    assert count("2") == 1  # no longer watching


def test_freezing_the_startup_heap_takes_it_out_of_full_collections() -> None:
    import gc

    from hub.entrypoints.heap import freeze_startup_heap

    kept = [[i] for i in range(10_000)]  # long-lived objects, as start-up builds them
    frozen = freeze_startup_heap()
    try:
        assert frozen >= len(kept)
        walked = {id(o) for o in gc.get_objects()}  # what a full collection would walk
        assert id(kept[0]) not in walked and id(kept[-1]) not in walked
    finally:
        gc.unfreeze()
