"""`hub serve`: run the HTTP gateway until SIGTERM/SIGINT (then it stops accepting and drains)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from prometheus_client import disable_created_metrics

from hub.bootstrap import create_app
from hub.entrypoints.drain import serve
from hub.entrypoints.logs import configure_logging
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve", help="run the HTTP gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to finish in-flight requests"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging()
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: clutter
    settings = Settings.from_env()
    app = create_app(settings)
    asyncio.run(serve(app, args.host, args.port, args.shutdown_timeout))
    return 0
