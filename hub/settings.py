"""Settings from environment variables, read once by the composition root (never at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value else default


@dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'hub.sqlite'}"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    routing_rules: Path = PROJECT_ROOT / "routing_rules"
    schema_releases: Path = PROJECT_ROOT / "xsd" / "releases.toml"
    max_body_bytes: int = 25 * 1024 * 1024
    amqp_exchange: str = "hub.berichten"
    amqp_queue_prefix: str = "hub.ontvanger."
    delivery_limit: int = 20
    retry_base_seconds: float = 5.0
    retry_cap_seconds: float = 3600.0
    retry_max_attempts: int = 150
    retry_max_age_hours: float = 120.0  # five days
    retention_days: float = 60.0  # bodies are deleted this long after delivery
    amqp_settle_seconds: float = 30.0  # AMQP channel: forwarded this long ago + queue seen empty = delivered
    worker_prefetch: int = 16  # messages of one receiver queue a worker holds at once
    push_connections: int = 8  # POSTs to one receiver host in flight at once, per worker
    admin_token: str = ""  # operator token for /v1/admin/*; empty: admin calls are refused
    require_known_conversation: bool = True  # refuse a retour/325 whose heenbericht the hub never saw
    # Trust under attack (docs/security.md).
    tls_cert: str = ""  # HUB_TLS_CERT: the server's certificate chain (PEM); with the key and client CA: mTLS
    tls_key: str = ""  # HUB_TLS_KEY
    tls_client_ca: str = ""  # HUB_TLS_CLIENT_CA: the CA(s) client certificates must chain to
    bearer_tokens: bool = True  # HUB_BEARER_TOKENS=off: only client certificates authenticate
    rate_per_second: float = 50.0  # per party, token bucket; 0: no rate limit
    rate_burst: int = 500
    max_concurrent_per_party: int = 16  # requests of one party in flight at once; 0: no limit
    max_inflight_bytes: int = 200 * 1024 * 1024  # request bodies in flight, all parties; 0: no cap
    body_keys: str = ""  # HUB_BODY_KEYS: "k2:base64,k1:base64"; the first encrypts new bodies
    # A request's headers, and then its whole body, must arrive within this many seconds (slow senders).
    body_read_timeout: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            database_url=_env("HUB_DATABASE_URL", d.database_url),
            amqp_url=_env("HUB_AMQP_URL", d.amqp_url),
            routing_rules=Path(_env("HUB_ROUTING_RULES", str(d.routing_rules))),
            schema_releases=Path(_env("HUB_SCHEMA_RELEASES", str(d.schema_releases))),
            max_body_bytes=int(_env("HUB_MAX_BODY_BYTES", str(d.max_body_bytes))),
            amqp_exchange=_env("HUB_AMQP_EXCHANGE", d.amqp_exchange),
            amqp_queue_prefix=_env("HUB_AMQP_QUEUE_PREFIX", d.amqp_queue_prefix),
            delivery_limit=int(_env("HUB_DELIVERY_LIMIT", str(d.delivery_limit))),
            retry_base_seconds=float(_env("HUB_RETRY_BASE_SECONDS", str(d.retry_base_seconds))),
            retry_cap_seconds=float(_env("HUB_RETRY_CAP_SECONDS", str(d.retry_cap_seconds))),
            retry_max_attempts=int(_env("HUB_RETRY_MAX_ATTEMPTS", str(d.retry_max_attempts))),
            amqp_settle_seconds=float(_env("HUB_AMQP_SETTLE_SECONDS", str(d.amqp_settle_seconds))),
            worker_prefetch=int(_env("HUB_WORKER_PREFETCH", str(d.worker_prefetch))),
            push_connections=int(_env("HUB_PUSH_CONNECTIONS", str(d.push_connections))),
            retry_max_age_hours=float(_env("HUB_RETRY_MAX_AGE_HOURS", str(d.retry_max_age_hours))),
            retention_days=float(_env("HUB_RETENTION_DAYS", str(d.retention_days))),
            admin_token=_env("HUB_ADMIN_TOKEN", d.admin_token),
            require_known_conversation=_env("HUB_REQUIRE_KNOWN_CONVERSATION", "true").lower()
            not in ("0", "false", "no"),
            tls_cert=_env("HUB_TLS_CERT", d.tls_cert),
            tls_key=_env("HUB_TLS_KEY", d.tls_key),
            tls_client_ca=_env("HUB_TLS_CLIENT_CA", d.tls_client_ca),
            bearer_tokens=_env("HUB_BEARER_TOKENS", "on").lower() not in ("0", "off", "false", "no"),
            rate_per_second=float(_env("HUB_RATE_PER_SECOND", str(d.rate_per_second))),
            rate_burst=int(_env("HUB_RATE_BURST", str(d.rate_burst))),
            max_concurrent_per_party=int(
                _env("HUB_MAX_CONCURRENT_PER_PARTY", str(d.max_concurrent_per_party))
            ),
            max_inflight_bytes=int(_env("HUB_MAX_INFLIGHT_BYTES", str(d.max_inflight_bytes))),
            body_keys=_env("HUB_BODY_KEYS", d.body_keys),
            body_read_timeout=float(_env("HUB_BODY_READ_TIMEOUT", str(d.body_read_timeout))),
        )

    @property
    def tls(self) -> bool:
        """mTLS is on when the certificate, its key and the client CA are all set."""
        return bool(self.tls_cert and self.tls_key and self.tls_client_ca)
