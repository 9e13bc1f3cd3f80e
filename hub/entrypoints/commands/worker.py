"""`hub worker`: deliver messages (push and mailbox), retry, dead-letter, and run retention.

Runs until SIGTERM/SIGINT, then stops taking messages and lets the ones in hand finish (those that
do not finish in time go back to their queue). Serves /healthz and /metrics on --metrics-port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from hub.adapters.metrics import HubMetrics
from hub.bootstrap import WorkerComponents, build_worker
from hub.entrypoints.heap import freeze_startup_heap
from hub.entrypoints.logs import configure_logging
from hub.service.ports import DeliveryStore
from hub.settings import Settings

log = logging.getLogger("hub.worker")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("worker", help="run a delivery worker")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--metrics-port", type=int, default=9101, help="serves /healthz and /metrics (0: off)")
    p.add_argument("--retention-every", type=float, default=3600.0, help="seconds between retention runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging()
    asyncio.run(_main(args, Settings.from_env()))
    return 0


async def _main(args: argparse.Namespace, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = HubMetrics("worker")
    unwatch_gc = metrics.watch_gc()
    try:
        await _run_worker(args, settings, metrics, stop)
    finally:
        unwatch_gc()
    log.info("worker stopped")


async def _run_worker(
    args: argparse.Namespace, settings: Settings, metrics: HubMetrics, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    async with build_worker(settings, metrics) as c:
        metrics.rules_loaded(c.rules.current.version)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(c, metrics))
        runner = await _serve_metrics(args, metrics) if args.metrics_port else None
        retention = loop.create_task(_retention_forever(c, args.retention_every))
        freeze_startup_heap()
        log.info("worker running")
        await stop.wait()
        log.info("worker stopping")
        retention.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await retention
        if runner is not None:
            await runner.cleanup()


def _reload(c: WorkerComponents, metrics: HubMetrics) -> None:
    result = c.rules.reload()
    metrics.rules_reloaded(result.ok, result.version)
    if result.ok:
        log.info("routing rules reloaded: version %s", result.version)
    else:
        log.error("routing rules reload refused, old rules stay: %d errors", len(result.errors))


async def purge_old_bodies(store: DeliveryStore, retention_days: float, *, batch: int = 500) -> int:
    """Delete the bodies of messages delivered longer ago than the retention period, in batches."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    total = 0
    while (n := await store.purge_bodies(cutoff, batch=batch)) > 0:
        total += n
        await asyncio.sleep(0)  # let deliveries run between batches
    if total:
        await store.reclaim_space()
        log.info("retention: deleted %d bodies delivered before %s", total, cutoff.date().isoformat())
    return total


async def _retention_forever(c: WorkerComponents, every: float) -> None:
    while True:
        try:
            await purge_old_bodies(c.store, c.settings.retention_days)
        except Exception:
            log.exception("retention run failed; next run in %.0f s", every)
        await asyncio.sleep(every)


async def _serve_metrics(args: argparse.Namespace, metrics: HubMetrics) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics_handler(request: web.Request) -> web.Response:
        body, content_type = await metrics.exposition(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.metrics_host, args.metrics_port).start()
    return runner
