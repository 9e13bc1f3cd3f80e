"""The delivery side of the benchmark: a push receiver, a preloader, the bare consume-and-POST loop and
a mailbox client, each run as its own process by the harness (bench/run.py).

    python -m bench.delivery receiver --port P
        an aiohttp server: POST /inbox answers 200 and records the arrival time of each distinct
        X-Message-Id; GET /stats -> {"n", "first", "last", "posts"} (times: time.monotonic(), system-wide
        on Linux; posts: every POST, repeats included);
        POST /reset forgets everything.
    python -m bench.delivery preload '<json>'
        POST n fresh messages to a hub (`url`, `token`, `template`, `prefix`), `concurrency` at once;
        prints {"ok": n, "statuses": {...}}.
    python -m bench.delivery bare-preload '<json>'
        publish n persistent messages (confirmed) to a quorum queue `name` (the hub's queue kind).
    python -m bench.delivery bare-consume '<json>'
        the baseline: consume queue `name` with prefetch `prefetch`, POST each body to `endpoint`
        (X-Message-Id) over at most `connections` connections, ack after the 2xx; exits after n acks.
    python -m bench.delivery mailbox '<json>'
        a receiver fetching its mailbox: GET /v1/mailbox?limit=100, then for each entry GET the body
        and POST the ack (`concurrency` entries at once), until n are acked; meters itself.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
from aiohttp import web

from bench.loadgen import Bodies
from bench.procs import CpuMeter


def receiver_app() -> web.Application:
    arrivals: dict[str, float] = {}
    state = {"first": 0.0, "last": 0.0, "posts": 0.0}

    async def inbox(request: web.Request) -> web.Response:
        await request.read()
        state["posts"] += 1  # every POST, repeats of a message included
        mid = request.headers.get("X-Message-Id", "")
        if mid not in arrivals:
            now = time.monotonic()
            arrivals[mid] = now
            if len(arrivals) == 1:
                state["first"] = now
            state["last"] = now
        return web.Response(status=200)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"n": len(arrivals), **state})

    async def reset(_request: web.Request) -> web.Response:
        arrivals.clear()
        state.update(first=0.0, last=0.0, posts=0.0)
        return web.json_response({"n": 0})

    app = web.Application(client_max_size=30 * 1024 * 1024)
    app.router.add_post("/inbox", inbox)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    return app


async def preload(spec: dict[str, Any]) -> dict[str, Any]:
    bodies = Bodies(spec["body"], spec["prefix"])
    headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/xml"}
    statuses: dict[str, int] = {}
    left = [int(spec["n"])]
    ids: list[str] = []

    async def sender(session: aiohttp.ClientSession) -> None:
        while left[0] > 0:
            left[0] -= 1
            body = bodies.next()
            for _ in range(20):  # a 503 (busy, in progress) is retried as a sender would
                async with session.post(spec["url"], data=body, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 503:
                        break
                await asyncio.sleep(0.2)
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            if r.status in (200, 202):
                ids.append(json.loads(answer)["message_id"])

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(sender(session) for _ in range(int(spec.get("concurrency", 32)))))
    return {"ok": len(ids), "statuses": statuses}


async def bare_preload(spec: dict[str, Any]) -> dict[str, Any]:
    body: bytes = spec["body"]
    connection = await aio_pika.connect(spec["amqp"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(spec["name"], durable=True, arguments=spec["arguments"])
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                message = aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=f"{spec['prefix']}-{i}",
                    content_type="application/xml",
                )
                await channel.default_exchange.publish(message, routing_key=queue.name)

        await asyncio.gather(*(one(i) for i in range(int(spec["n"]))))
    return {"ok": int(spec["n"])}


async def bare_consume(spec: dict[str, Any]) -> dict[str, Any]:
    """The straightforward consume-and-POST loop: prefetch P, POST, ack on 2xx, nack+requeue otherwise."""
    n = int(spec["n"])
    done = asyncio.Event()
    acked = [0]
    connection = await aio_pika.connect(spec["amqp"])
    timeout = aiohttp.ClientTimeout(total=30, connect=5)
    # As many connections to the receiver as the hub's worker opens (HUB_PUSH_CONNECTIONS).
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=int(spec["connections"]))
    async with connection, aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=int(spec["prefetch"]))
        queue = await channel.declare_queue(spec["name"], durable=True, arguments=spec["arguments"])

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            headers = {"Content-Type": "application/xml", "X-Message-Id": message.message_id or ""}
            try:
                async with session.post(spec["endpoint"], data=message.body, headers=headers) as r:
                    await r.read()
                    ok = 200 <= r.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                await message.ack()
                acked[0] += 1
                if acked[0] >= n:
                    done.set()
            else:
                await message.nack(requeue=True)

        await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=float(spec.get("timeout", 120)))
    return {"ok": acked[0]}


async def mailbox(spec: dict[str, Any]) -> dict[str, Any]:
    n, base = int(spec["n"]), spec["url"]
    auth = {"Authorization": f"Bearer {spec['token']}"}
    meter = CpuMeter(list(spec.get("server_pids", [])))
    statuses: dict[str, int] = {}
    acked = 0
    timeout = aiohttp.ClientTimeout(total=60)
    sem = asyncio.Semaphore(int(spec.get("concurrency", 8)))

    def count(status: int) -> None:
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    async def one(session: aiohttp.ClientSession, href: str) -> bool:
        async with sem:
            async with session.get(base + href, headers=auth) as r:
                await r.read()
                if r.status != 200:
                    count(r.status)
                    return False
            async with session.post(base + href + "/ack", headers=auth) as r:
                await r.read()
                count(r.status)
                return r.status == 200

    async with aiohttp.ClientSession(timeout=timeout) as session:
        meter.start()
        started = time.perf_counter()
        while acked < n:
            async with session.get(base + "/v1/mailbox?limit=100", headers=auth) as r:
                page = await r.json()
            entries = page.get("berichten", [])
            if not entries:
                break
            results = await asyncio.gather(*(one(session, e["href"]) for e in entries))
            acked += sum(results)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
    return {
        "ok": acked,
        "statuses": statuses,
        "seconds": elapsed,
        "msgs_per_s": acked / elapsed if elapsed > 0 else 0.0,
        "cpu_s": cpu,
        "rss_mib": meter.peak_rss_mib(),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    what = args[0]
    if what == "receiver":
        port = int(args[args.index("--port") + 1])
        web.run_app(receiver_app(), host="127.0.0.1", port=port, access_log=None, print=None)
        return 0
    spec = json.loads(args[1])
    if "template" in spec:
        spec["body"] = Path(spec["template"]).read_bytes()
    runs = {"preload": preload, "bare-preload": bare_preload, "bare-consume": bare_consume}
    runs["mailbox"] = mailbox
    print(json.dumps(asyncio.run(runs[what](spec))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
