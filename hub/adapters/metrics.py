"""Prometheus metrics: the observers of hub/service/observe.py, and hub-wide gauges read on scrape.

Every process (gateway, worker) has its own `HubMetrics` with its own CollectorRegistry (never the
global one, so several apps in one process, and the tests, do not collide) and exposes it on its own
`GET /metrics`. Counters and histograms count what that process did; Prometheus sums over instances.
The hub-wide gauges (backlog, dead letters, overdue answers) come from the database and RabbitMQ
through `StatsCollector`, at most every `max_age` seconds; they are the same in every process that
exposes them, so dashboards and alerts take `max()` over instances. docs/operations.md lists every
metric.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import platform
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from hub.adapters.db.stats import HubStats
from hub.domain.catalogue import BerichtType
from hub.domain.errors import ErrorCode
from hub.domain.parties import PartyKind

log = logging.getLogger(__name__)

# Validation of a small message takes well under a millisecond, a 25 MB one seconds.
VALIDATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The acceptance includes two group commits and a publisher confirm: a few milliseconds and up.
ACCEPTANCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A young-generation collection takes well under a millisecond; a full one walks every tracked object.
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNKNOWN = "unknown"  # the label value when the standard or message type could not be read


def hub_version() -> str:
    try:
        return metadata.version("istandaarden-hub")
    except metadata.PackageNotFoundError:
        return UNKNOWN


class HubMetrics:
    """Implements IntakeObserver and DeliveryObserver, plus the routing-rules and build-info metrics."""

    def __init__(self, component: str, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._stats: list[StatsCollector] = []
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        build = Gauge(
            "hub_build_info",
            "Build of this hub process (always 1)",
            ["version", "python", "component"],
            registry=r,
        )
        build.labels(hub_version(), platform.python_version(), component).set(1)
        self.gc_pause_seconds = Histogram(
            "hub_gc_pause_seconds",
            "Pauses of Python's garbage collector (the event loop stands still), by generation",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=r,
        )

        # -- intake ------------------------------------------------------------------------------
        self.received_total = Counter(
            "hub_messages_received_total", "POST /v1/berichten requests received", registry=r
        )
        self.accepted_total = Counter(
            "hub_messages_accepted_total",
            "Messages accepted (202): stored and confirmed in the receiver's queue",
            ["standard", "message", "receiver_kind"],
            registry=r,
        )
        self.duplicates_total = Counter(
            "hub_messages_duplicate_total",
            "Messages answered 200 as a duplicate of one accepted before",
            ["standard", "message"],
            registry=r,
        )
        self.refused_total = Counter(
            "hub_messages_refused_total",
            "Messages refused (4xx), by error code; standard and message 'unknown' when unreadable",
            ["code", "standard", "message"],
            registry=r,
        )
        self.unavailable_total = Counter(
            "hub_messages_unavailable_total",
            "Messages answered 503 because the database or RabbitMQ was unavailable",
            ["what"],
            registry=r,
        )
        self.validation_seconds = Histogram(
            "hub_validation_duration_seconds",
            "Time to parse and validate one message",
            ["standard", "outcome"],
            buckets=VALIDATION_BUCKETS,
            registry=r,
        )
        self.acceptance_seconds = Histogram(
            "hub_acceptance_duration_seconds",
            "From the start of the intake to the committed 'forwarded' status of an accepted message",
            buckets=ACCEPTANCE_BUCKETS,
            registry=r,
        )
        self.publishes_total = Counter(
            "hub_broker_publishes_total",
            "Publishes to RabbitMQ: confirmed, or failed (returned, nacked, timed out, broker down)",
            ["outcome"],
            registry=r,
        )
        for outcome in ("confirmed", "failed"):
            self.publishes_total.labels(outcome)
        for what in ("database", "broker"):
            self.unavailable_total.labels(what)

        # -- delivery (workers) ------------------------------------------------------------------
        labels = ["channel", "receiver_kind"]
        self.deliveries_attempted = Counter(
            "hub_deliveries_attempted_total", "Delivery attempts", labels, registry=r
        )
        self.deliveries_succeeded = Counter(
            "hub_deliveries_succeeded_total", "Deliveries the receiver took", labels, registry=r
        )
        self.deliveries_retried = Counter(
            "hub_deliveries_retried_total",
            "Failed delivery attempts that will be retried",
            labels,
            registry=r,
        )
        self.deliveries_dead_lettered = Counter(
            "hub_deliveries_dead_lettered_total", "Deliveries given up (dead-lettered)", labels, registry=r
        )
        self.delivery_seconds = Histogram(
            "hub_delivery_duration_seconds",
            "Duration of a successful delivery attempt",
            ["channel"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )

        # -- routing rules -----------------------------------------------------------------------
        self.rules_info = Gauge(
            "hub_routing_rules_info", "The routing rules version in force (always 1)", ["version"], registry=r
        )
        self.rules_reloads = Counter(
            "hub_routing_rules_reloads_total", "Routing rules reloads, by outcome", ["outcome"], registry=r
        )
        self.rules_last_reload_ok = Gauge(
            "hub_routing_rules_last_reload_ok",
            "1 unless the last reload was refused (the old rules stay in force)",
            registry=r,
        )
        self.rules_loaded_at = Gauge(
            "hub_routing_rules_loaded_timestamp_seconds",
            "When the rules in force were loaded (Unix time)",
            registry=r,
        )
        for outcome in ("ok", "failed"):
            self.rules_reloads.labels(outcome)
        self.rules_last_reload_ok.set(1)
        self._rules_version: str | None = None

    # -- IntakeObserver ------------------------------------------------------------------------

    def watch_gc(self) -> Callable[[], None]:
        """Time every garbage collection into hub_gc_pause_seconds; returns the function that stops it.

        A full collection stops the event loop for as long as it walks the heap, so it shows as a
        latency spike in every request in flight; this makes such pauses visible next to them."""
        by_generation = {g: self.gc_pause_seconds.labels(str(g)) for g in range(3)}
        started = [0.0]

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                by_generation[info["generation"]].observe(time.perf_counter() - started[0])

        gc.callbacks.append(callback)
        return lambda: gc.callbacks.remove(callback)

    def received(self) -> None:
        self.received_total.inc()

    def refused(self, code: ErrorCode, standard: str | None, message: str | None) -> None:
        self.refused_total.labels(code.value, standard or UNKNOWN, message or UNKNOWN).inc()

    def unavailable(self, what: str) -> None:
        self.unavailable_total.labels(what if what in ("database", "broker") else "other").inc()

    def validated(self, standard: str | None, message: str | None, seconds: float, valid: bool) -> None:
        # No message label here: 34 types x 14 buckets x 2 outcomes is more series than it is worth.
        self.validation_seconds.labels(standard or UNKNOWN, "valid" if valid else "invalid").observe(seconds)

    def accepted(self, standard: str, message: str, receiver_kind: str, duplicate: bool) -> None:
        if duplicate:
            self.duplicates_total.labels(standard, message).inc()
        else:
            self.accepted_total.labels(standard, message, receiver_kind).inc()

    def acceptance(self, seconds: float) -> None:
        self.acceptance_seconds.observe(seconds)

    def published(self, ok: bool) -> None:
        self.publishes_total.labels("confirmed" if ok else "failed").inc()

    # -- DeliveryObserver ----------------------------------------------------------------------

    def attempted(self, channel: str, receiver_kind: str) -> None:
        self.deliveries_attempted.labels(channel, receiver_kind).inc()

    def succeeded(self, channel: str, receiver_kind: str, seconds: float | None = None) -> None:
        self.deliveries_succeeded.labels(channel, receiver_kind).inc()
        if seconds is not None:
            self.delivery_seconds.labels(channel).observe(seconds)

    def retried(self, channel: str, receiver_kind: str) -> None:
        self.deliveries_retried.labels(channel, receiver_kind).inc()

    def dead_lettered(self, channel: str, receiver_kind: str) -> None:
        self.deliveries_dead_lettered.labels(channel, receiver_kind).inc()

    # -- routing rules -------------------------------------------------------------------------

    def rules_loaded(self, version: str) -> None:
        """The rules in force are `version` (at start-up, and after a successful reload)."""
        if version != self._rules_version:
            self.rules_info.clear()
            self.rules_info.labels(version).set(1)
            self.rules_loaded_at.set(time.time())
            self._rules_version = version

    def rules_reloaded(self, ok: bool, version: str) -> None:
        self.rules_reloads.labels("ok" if ok else "failed").inc()
        self.rules_last_reload_ok.set(1 if ok else 0)
        if ok:
            self.rules_loaded(version)

    # -- exposition ----------------------------------------------------------------------------

    def add_stats(self, collector: StatsCollector) -> None:
        self.registry.register(collector)
        self._stats.append(collector)

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The text for GET /metrics: OpenMetrics when the scraper asks for it, else Prometheus text."""
        for stats in self._stats:
            await stats.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


@dataclass(frozen=True, slots=True)
class _Snapshot:
    stats: HubStats | None
    dead_letter_queue: int | None


class StatsCollector:
    """The hub-wide gauges, computed on scrape from the database and RabbitMQ and cached.

    `refresh()` (awaited by the /metrics handler before rendering) starts a new read when the cached
    one is older than `max_age` seconds and waits for it at most `wait` seconds: a slow database never
    hangs /metrics; the scrape then gets the previous values and `hub_stats_up 0`, and the read
    finishes in the background for the next scrape (bounded by `read_timeout`).
    """

    def __init__(
        self,
        read_db: Callable[[datetime], Awaitable[HubStats]],
        read_dead_letter_queue: Callable[[], Awaitable[int | None]] | None,
        heen_types: Sequence[BerichtType],
        *,
        max_age: float = 5.0,
        wait: float = 2.0,
        read_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_db = read_db
        self._read_dlq = read_dead_letter_queue
        self._heen = [(t.standaard.value, t.naam) for t in heen_types]
        self._max_age = max_age
        self._wait = wait
        self._read_timeout = read_timeout
        self._clock = clock
        self._snapshot = _Snapshot(None, None)
        self._read_at: float | None = None  # monotonic time of the last finished read
        self._ok = False
        self._duration = 0.0
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        now = self._clock()
        if self._task is None and (self._read_at is None or now - self._read_at >= self._max_age):
            self._task = asyncio.get_running_loop().create_task(self._read())
        task = self._task
        if task is not None:
            await asyncio.wait({task}, timeout=self._wait)
            if not task.done():
                self._ok = False  # this scrape reports stale numbers

    async def _read(self) -> None:
        started = self._clock()
        ok = True
        stats, dlq = self._snapshot.stats, self._snapshot.dead_letter_queue
        try:
            async with asyncio.timeout(self._read_timeout):
                try:
                    stats = await self._read_db(datetime.now(UTC))
                except Exception as exc:  # any failure: keep the old numbers, say so
                    ok = False
                    log.warning("metrics: reading the database stats failed: %s", type(exc).__name__)
                if self._read_dlq is not None:
                    try:
                        dlq = await self._read_dlq()
                    except Exception as exc:
                        ok = False
                        log.warning("metrics: reading the dead-letter queue failed: %s", type(exc).__name__)
        except TimeoutError:
            ok = False
            log.warning("metrics: the stats read took longer than %.0f s", self._read_timeout)
        finally:
            self._snapshot = _Snapshot(stats, dlq)
            self._ok = ok
            self._duration = self._clock() - started
            self._read_at = self._clock()
            self._task = None

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None, None))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(self._snapshot, datetime.now(UTC)))

    def _families(self, snap: _Snapshot | None, now: datetime | None) -> Iterable[Metric]:
        backlog = GaugeMetricFamily(
            "hub_backlog_messages",
            "Messages in a receiver's queue or mailbox, not yet delivered",
            labels=["receiver_kind"],
        )
        oldest = GaugeMetricFamily(
            "hub_backlog_oldest_age_seconds",
            "Age of the oldest undelivered message (0 when there is none)",
            labels=["receiver_kind"],
        )
        dead = GaugeMetricFamily(
            "hub_dead_lettered_messages",
            "Messages whose delivery was given up and that wait for ops (database)",
            labels=["receiver_kind"],
        )
        dlq = GaugeMetricFamily(
            "hub_dead_letter_queue_messages", "Messages ready in RabbitMQ's dead-letter queue"
        )
        unforwarded = GaugeMetricFamily(
            "hub_unforwarded_messages",
            "Messages stored for over a minute but never confirmed by RabbitMQ (status received)",
        )
        overdue = GaugeMetricFamily(
            "hub_overdue_conversations",
            "Heenberichten whose answer is past its deadline in working days (last 90 days)",
            labels=["standard", "message"],
        )
        up = GaugeMetricFamily("hub_stats_up", "1 when the last read of the hub-wide gauges succeeded")
        duration = GaugeMetricFamily(
            "hub_stats_read_duration_seconds", "How long the last read of the hub-wide gauges took"
        )
        if snap is not None and now is not None:
            s = snap.stats
            if s is not None:
                for kind in PartyKind:
                    b = s.backlog.get(kind.value)
                    backlog.add_metric([kind.value], b.messages if b else 0)
                    age = (now - b.oldest_received_at).total_seconds() if b and b.oldest_received_at else 0.0
                    oldest.add_metric([kind.value], max(age, 0.0))
                    dead.add_metric([kind.value], s.dead_lettered.get(kind.value, 0))
                unforwarded.add_metric([], s.unforwarded)
                for standard, message in self._heen:
                    overdue.add_metric([standard, message], s.overdue.get((standard, message), 0))
            if snap.dead_letter_queue is not None:
                dlq.add_metric([], snap.dead_letter_queue)
            up.add_metric([], 1 if self._ok else 0)
            duration.add_metric([], self._duration)
        return [backlog, oldest, dead, dlq, unforwarded, overdue, up, duration]


__all__ = ["HubMetrics", "StatsCollector", "hub_version"]
