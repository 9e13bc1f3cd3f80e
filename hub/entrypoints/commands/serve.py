"""`hub serve`: run the HTTP gateway until SIGTERM/SIGINT (then it stops accepting and drains)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
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
    try:
        context = tls_context(settings)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"hub serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    asyncio.run(
        serve(
            app,
            args.host,
            args.port,
            args.shutdown_timeout,
            context,
            header_timeout=settings.body_read_timeout,
        )
    )
    return 0


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Mutual TLS when HUB_TLS_CERT, HUB_TLS_KEY and HUB_TLS_CLIENT_CA are set: TLS 1.2 or newer, and
    every client must present a certificate that chains to the client CA and is within its validity
    (else the handshake fails). None when none of the three is set; ValueError when only some are."""
    given = {
        "HUB_TLS_CERT": settings.tls_cert,
        "HUB_TLS_KEY": settings.tls_key,
        "HUB_TLS_CLIENT_CA": settings.tls_client_ca,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(
            f"mutual TLS needs HUB_TLS_CERT, HUB_TLS_KEY and HUB_TLS_CLIENT_CA; missing {', '.join(missing)}"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=settings.tls_client_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
