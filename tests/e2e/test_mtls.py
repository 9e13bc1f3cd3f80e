"""Mutual TLS end to end: the real `hub serve` with HUB_TLS_* set, a CA and certificates made here.

The hub requires a client certificate that chains to HUB_TLS_CLIENT_CA (else the handshake fails) and
maps it to a party through routing_rules/certificates.csv: by the OIN in the subject's serialNumber,
or by fingerprint. Bearer tokens are switched off (HUB_BEARER_TOKENS=off).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.berichten import example, with_header
from tests.support.certs import Issued, TestCA
from tests.support.hubproc import REPO, HubProcess, delete_topology, prepare_hub

pytestmark = [pytest.mark.rabbitmq]

DAY = date(2026, 1, 5)
OIN_0363 = "00000001000000000363"
OIN_0599 = "00000001000000000599"
OIN_UNKNOWN = "00000001999999999999"


@dataclass
class Pki:
    ca: TestCA
    gemeente: Issued  # gemeente 0363, by OIN
    supplier: Issued  # aanbieder 11223344 (sends for 12345678), by fingerprint
    admin: Issued  # the operator, by fingerprint
    expired: Issued  # gemeente 0599 by OIN, but expired
    unknown: Issued  # from the right CA, an OIN the directory does not know
    rogue: Issued  # OIN of 0363, but from another CA


@dataclass
class TlsHub:
    hub: HubProcess
    pki: Pki

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.hub.port}"

    def context(self, client: Issued | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca.pem))
        if client is not None:
            context.load_cert_chain(*client.pair)
        return context


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsHub]:
    tmp = tmp_path_factory.mktemp("mtls")
    ca, rogue_ca = TestCA(tmp, "hub"), TestCA(tmp, "rogue")
    server = ca.issue("server", server=True)
    pki = Pki(
        ca=ca,
        gemeente=ca.issue("gemeente-0363", oin=OIN_0363),
        supplier=ca.issue("softwarehuis"),
        admin=ca.issue("operator"),
        expired=ca.issue("gemeente-0599", oin=OIN_0599, expired=True),
        unknown=ca.issue("unknown", oin=OIN_UNKNOWN),
        rogue=rogue_ca.issue("gemeente-0363", oin=OIN_0363),
    )
    rules = tmp / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules)
    (rules / "certificates.csv").write_text(
        "party,oin,fingerprint,valid_from,valid_until\n"
        f"gemeente:0363,{OIN_0363},,,\n"
        f"gemeente:0599,{OIN_0599},,,\n"
        f"aanbieder:11223344,,{pki.supplier.fingerprint},,\n"
        f"admin,,{pki.admin.fingerprint},,\n"
    )
    hub = prepare_hub(
        f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}",
        tmp,
        {"gemeente": "0363"},
        HUB_ROUTING_RULES=str(rules),
        HUB_TLS_CERT=str(server.cert),
        HUB_TLS_KEY=str(server.key),
        HUB_TLS_CLIENT_CA=str(ca.pem),
        HUB_BEARER_TOKENS="off",
    )
    hub.start()
    try:
        yield TlsHub(hub, pki)
    finally:
        hub.stop()
        asyncio.run(delete_topology(hub))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        yield s


async def _call(
    session: aiohttp.ClientSession,
    tls: TlsHub,
    client: Issued | None,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    all_headers = {"Content-Type": "application/xml"} | (headers or {})
    async with session.request(
        method, tls.url + path, data=body, headers=all_headers, ssl=tls.context(client)
    ) as r:
        return r.status, await r.json()


def _message(naam: str, afzender: str, ontvanger: str) -> bytes:
    return with_header(
        example("iwmo-3.2", naam),
        afzender=afzender,
        ontvanger=ontvanger,
        identificatie=uuid.uuid4().hex[:12],
        dagtekening=DAY,
    )


async def test_a_certificate_maps_by_oin_to_its_party_and_sees_only_its_messages(
    tls_hub: TlsHub, session: aiohttp.ClientSession
) -> None:
    pki = tls_hub.pki
    status, answer = await _call(
        session, tls_hub, pki.gemeente, "POST", "/v1/berichten", _message("WMO301", "0363", "12345678")
    )
    assert status == 202, answer
    assert answer["afzender"] == "0363"
    status_url = answer["status_url"]
    status, trail = await _call(session, tls_hub, pki.gemeente, "GET", status_url)
    assert status == 200 and trail["afzender"] == "gemeente:0363"
    # Another party's certificate does not see it; the operator's does.
    status, refused = await _call(session, tls_hub, pki.supplier, "GET", status_url)
    assert (status, refused["error"]["code"]) == (404, "not_found")
    status, _ = await _call(session, tls_hub, pki.admin, "GET", status_url)
    assert status == 200


async def test_the_certificates_party_may_send_only_as_itself_or_whom_the_directory_allows(
    tls_hub: TlsHub, session: aiohttp.ClientSession
) -> None:
    pki = tls_hub.pki
    # The gemeente's certificate, a header naming another gemeente: refused.
    status, answer = await _call(
        session, tls_hub, pki.gemeente, "POST", "/v1/berichten", _message("WMO301", "0599", "12345678")
    )
    assert (status, answer["error"]["code"]) == (403, "afzender_mismatch")
    # The software supplier (by fingerprint) sends for aanbieder 12345678 (sends_for.csv) ...
    status, answer = await _call(
        session, tls_hub, pki.supplier, "POST", "/v1/berichten", _message("WMO305", "12345678", "0363")
    )
    assert status == 202, answer
    # ... but not for an aanbieder the directory does not name.
    status, answer = await _call(
        session, tls_hub, pki.supplier, "POST", "/v1/berichten", _message("WMO305", "12121212", "0363")
    )
    assert (status, answer["error"]["code"]) == (403, "afzender_mismatch")


async def test_the_operators_certificate_has_the_admin_role_and_a_partys_has_not(
    tls_hub: TlsHub, session: aiohttp.ClientSession
) -> None:
    status, _ = await _call(session, tls_hub, tls_hub.pki.admin, "GET", "/v1/admin/overdue")
    assert status == 200
    status, answer = await _call(session, tls_hub, tls_hub.pki.gemeente, "GET", "/v1/admin/overdue")
    assert (status, answer["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize("which", ["none", "rogue", "expired"])
async def test_the_handshake_fails_without_a_valid_certificate_of_the_ca(
    tls_hub: TlsHub, session: aiohttp.ClientSession, which: str
) -> None:
    client = {"none": None, "rogue": tls_hub.pki.rogue, "expired": tls_hub.pki.expired}[which]
    with pytest.raises(aiohttp.ClientError):
        await _call(session, tls_hub, client, "GET", "/v1/mailbox")
    # The same call with a good certificate goes through: the failure was the certificate.
    status, _ = await _call(session, tls_hub, tls_hub.pki.gemeente, "GET", "/v1/mailbox")
    assert status == 200


async def test_an_unknown_certificate_is_401_and_bearer_tokens_are_off(
    tls_hub: TlsHub, session: aiohttp.ClientSession
) -> None:
    status, answer = await _call(session, tls_hub, tls_hub.pki.unknown, "GET", "/v1/mailbox")
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")
    assert "certificate" in answer["error"]["message"]
    # A valid token of gemeente 0363 does not help: HUB_BEARER_TOKENS=off.
    token = {"Authorization": f"Bearer {tls_hub.hub.tokens['gemeente']}"}
    status, answer = await _call(session, tls_hub, tls_hub.pki.unknown, "GET", "/v1/mailbox", headers=token)
    assert (status, answer["error"]["code"]) == (401, "unauthenticated")


def test_hub_serve_refuses_to_start_with_half_a_tls_configuration(tmp_path: Path) -> None:
    import subprocess

    from tests.support.hubproc import HUB, hub_env

    env = hub_env(f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}", tmp_path, HUB_TLS_CERT="/nonexistent")
    done = subprocess.run([HUB, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "HUB_TLS_KEY" in done.stderr and "HUB_TLS_CLIENT_CA" in done.stderr
