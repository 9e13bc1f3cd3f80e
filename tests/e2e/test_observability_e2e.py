"""Observability, for real: the `hub serve` process, RabbitMQ, and a real Prometheus process.

- Prometheus scrapes the hub's /metrics every second with the alert rules of monitoring/ (a variant
  with test-sized thresholds, made from the same file) and sees the traffic we send; alerts fire:
  a receiver's oldest message too old (nobody picks up), refusals spiking, a refused rules reload.
- promtool accepts the alert rules and the example scrape config; the dashboard and the alert rules
  name only metrics the hub exports; every alert has a runbook section in docs/operations.md.
- No BSN in any log line, the metrics or an error body.
- SIGTERM: the gateway stops accepting, answers the requests in flight, and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.berichten import example, with_header
from tests.support.hubproc import REPO, HubProcess, delete_topology, prepare_hub
from tests.support.prom import ALERTS, DASHBOARD, names_and_labels, prometheus, require_tool, tuned_rules

pytestmark = [pytest.mark.rabbitmq]

# A BSN that passes the 11-test, and appears nowhere else in the examples.
BSN = "123456782"
# The production thresholds, shortened so the alerts fire within seconds (docs/operations.md).
TEST_TUNING = {
    "HubReceiverBacklogOld": [("> 4 * 3600", "> 3"), ("for: 15m", "for: 1s")],
    "HubRefusalsSpiking": [("[5m]", "[20s]"), ("for: 10m", "for: 1s")],
}


def wmo301(ident: str | None = None, bsn: str | None = None) -> bytes:
    body = with_header(
        example("iwmo-3.2", "WMO301"),
        afzender="0363",
        ontvanger="12345678",
        identificatie=ident or uuid.uuid4().hex[:12],
        dagtekening=date(2026, 1, 5),
    )
    if bsn is not None:
        body, n = re.subn(rb"<wmo301:Bsn>\d+</wmo301:Bsn>", f"<wmo301:Bsn>{bsn}</wmo301:Bsn>".encode(), body)
        assert n >= 1
    return body


def start_hub(tmp: Path, **extra: str) -> HubProcess:
    hub = prepare_hub(f"sqlite+aiosqlite:///{tmp / 'hub.sqlite'}", tmp, {"gemeente": "0363"}, **extra)
    hub.start()
    return hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = start_hub(tmp_path_factory.mktemp("obs-hub"))
    try:
        yield h
    finally:
        h.stop()
        asyncio.run(delete_topology(h))


def post(
    hub: HubProcess, body: bytes, *, token: str | None = "gemeente", rid: str | None = None
) -> tuple[int, str]:
    headers = {"Content-Type": "application/xml"}
    if token is not None:
        headers["Authorization"] = f"Bearer {hub.tokens[token]}"
    if rid is not None:
        headers["X-Request-Id"] = rid
    request = urllib.request.Request(f"{hub.url}/v1/berichten", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def scrape(hub: HubProcess) -> str:
    with urllib.request.urlopen(f"{hub.url}/metrics", timeout=10) as r:
        text: str = r.read().decode()
        return text


def exported_names(text: str) -> set[str]:
    """Every series name the exposition can carry, from its families (even those without samples)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def referenced_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in re.findall(r"\bhub_[a-z0-9_]+", expr)}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def alert_exprs() -> dict[str, str]:
    """alert name -> its expression (the rules file is simple enough to read without a YAML parser)."""
    text = ALERTS.read_text()
    out = {}
    for block in re.split(r"(?m)^(?=[ \t]*- alert: )", text)[1:]:
        name = re.match(r"[ \t]*- alert: (\S+)", block)
        expr = re.search(r"expr: (\|\n(?:\s{10}.*\n)+|.*\n)", block)
        assert name and expr, block
        out[name.group(1)] = expr.group(1)
    return out


# -- static checks (promtool, names, runbook) --------------------------------------------------------


def test_promtool_accepts_the_alert_rules_their_test_variant_and_the_scrape_config(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    variant = tmp_path / "alerts-test.yml"
    variant.write_text(tuned_rules(ALERTS.read_text(), TEST_TUNING))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        (REPO / "monitoring" / "prometheus" / "prometheus.yml")
        .read_text()
        .replace("/etc/prometheus/hub/alerts.yml", str(ALERTS))
    )
    for args in (["check", "rules", str(ALERTS), str(variant)], ["check", "config", str(config)]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "10 rules found"
        in subprocess.run(
            [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )


def test_dashboard_and_alerts_name_only_metrics_the_hub_exports(hub: HubProcess) -> None:
    exported = exported_names(scrape(hub))
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["templating"]["list"][0]["type"] == "datasource"
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    in_dashboard = referenced_names(dashboard_exprs())
    in_alerts = referenced_names(list(alert_exprs().values()))
    assert len(in_dashboard) >= 20 and len(in_alerts) >= 8  # the extraction found them
    assert in_dashboard - exported == set()
    assert in_alerts - exported == set()


def test_every_alert_has_a_runbook_section() -> None:
    docs = (REPO / "docs" / "operations.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"(?m)^#### (\S+)", docs)}
    for name in alert_exprs():
        assert name.lower() in headings, f"docs/operations.md has no '#### {name}' runbook section"
        assert f"docs/operations.md#{name.lower()}" in ALERTS.read_text()


# -- the real Prometheus -----------------------------------------------------------------------------


def test_prometheus_sees_the_traffic_and_the_alerts_fire(tmp_path: Path) -> None:
    rules_dir = tmp_path / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules_dir)
    hub = start_hub(tmp_path, HUB_ROUTING_RULES=str(rules_dir))
    try:
        rules = tuned_rules(ALERTS.read_text(), TEST_TUNING)
        with prometheus(tmp_path / "prom", [f"127.0.0.1:{hub.port}"], rules) as prom:
            prom.wait_for("the hub as a target", lambda: prom.scalar('up{job="hub"}') == 1)
            assert "HubReceiverBacklogOld" not in prom.firing()

            # Traffic over a few seconds, so several scrapes see the counters grow.
            for i in range(20):
                if i % 4 == 0:
                    assert post(hub, wmo301())[0] == 202
                assert post(hub, wmo301().replace(b"<wmo301:Bsn>", b"<wmo301:Bsn>x"))[0] == 422
                time.sleep(0.15)
            assert post(hub, wmo301(), token=None)[0] == 401

            def counters() -> bool:
                return (
                    prom.scalar("sum(hub_messages_accepted_total)") == 5
                    and prom.scalar('sum(hub_messages_refused_total{code="schema_invalid"})') == 20
                    and prom.scalar('sum(hub_messages_refused_total{code="unauthenticated"})') == 1
                    and prom.scalar("hub_messages_received_total") == 26
                )

            prom.wait_for("the counters of the traffic", counters)
            by_type = prom.query('hub_messages_accepted_total{standard="iWmo",message="WMO301"}')
            assert [s["metric"]["receiver_kind"] for s in by_type] == ["aanbieder"]
            assert prom.scalar('hub_broker_publishes_total{outcome="confirmed"}') == 5
            assert prom.scalar("hub_acceptance_duration_seconds_count") == 5
            p99 = prom.scalar(
                "histogram_quantile(0.99, sum by (le) (hub_acceptance_duration_seconds_bucket))"
            )
            assert p99 is not None and 0 < p99 < 5
            # Nobody takes the aanbieder's messages (no worker runs): its backlog holds all five.
            prom.wait_for(
                "the backlog", lambda: prom.scalar('hub_backlog_messages{receiver_kind="aanbieder"}') == 5
            )

            firing = prom.wait_for(
                "HubReceiverBacklogOld and HubRefusalsSpiking firing",
                lambda: (
                    (f := prom.firing()) and {"HubReceiverBacklogOld", "HubRefusalsSpiking"} <= set(f) and f
                ),
            )
            assert [a["receiver_kind"] for a in firing["HubReceiverBacklogOld"]] == ["aanbieder"]
            assert not {"HubDown", "HubPublishFailures", "HubRoutingRulesReloadFailed"} & set(firing)

            # A broken rules file: the reload is refused, the old rules stay, the alert fires.
            with (rules_dir / "parties.csv").open("a") as f:
                f.write("aanbieder,not-a-code,Broken,2020-01-01,\n")
            request = urllib.request.Request(
                f"{hub.url}/v1/admin/routes/reload",
                headers={"Authorization": f"Bearer {hub.env['HUB_ADMIN_TOKEN']}"},
                method="POST",
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            refused.value.close()
            assert refused.value.code == 422
            prom.wait_for(
                "HubRoutingRulesReloadFailed firing", lambda: "HubRoutingRulesReloadFailed" in prom.firing()
            )
            assert prom.scalar('hub_routing_rules_reloads_total{outcome="failed"}') == 1
    finally:
        hub.stop()
        asyncio.run(delete_topology(hub))


# -- no BSN anywhere ---------------------------------------------------------------------------------


def test_no_bsn_in_logs_metrics_or_error_bodies(hub: HubProcess) -> None:
    assert BSN.encode() not in b"".join(p.read_bytes() for p in (REPO / "examples").rglob("*.xml"))
    answers = []
    rid = f"bsn-{uuid.uuid4().hex[:8]}"
    status, accepted = post(hub, wmo301(bsn=BSN), rid=rid)
    assert status == 202, accepted
    answers.append(accepted)
    # Invalid where the BSN is: ten digits (the BSN and one more), and the BSN in broken XML.
    for body, expected in (
        (wmo301(bsn=BSN + "0"), 422),
        (b"<Bericht><Bsn>" + BSN.encode() + b"</Bsn>", 400),
        (wmo301(bsn=BSN).replace(b"<wmo301:Bsn>", b"<wmo301:Bsn a='" + BSN.encode() + b"'>"), 422),
    ):
        status, answer = post(hub, body)
        assert status == expected, answer
        answers.append(answer)
    time.sleep(0.2)  # let the log lines reach the file
    log = hub.log_tail(10_000_000)
    for text in [*answers, names_and_labels(scrape(hub)), log]:
        assert BSN not in text
    # The outcome line of the accepted one: structured, with its message id and request id.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    mine = [x for x in lines if x.get("request_id") == rid]
    assert len(mine) == 1
    assert mine[0]["event"] == "accepted" and mine[0]["status"] == 202
    assert mine[0]["message_id"] == json.loads(accepted)["message_id"]


# -- graceful shutdown -------------------------------------------------------------------------------


async def _start_request(
    port: int, body: bytes, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send the headers and half the body: the request is in flight, its handler reading the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /v1/berichten HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/xml\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    return reader, writer


async def _finish_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
    writer.write(body[len(body) // 2 :])
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    token = hub.tokens["gemeente"]
    try:

        async def scenario() -> list[int]:
            bodies = [wmo301() for _ in range(3)]
            started = [await _start_request(hub.port, b, token) for b in bodies]
            await asyncio.sleep(0.3)  # the handlers are running
            assert hub.proc is not None
            hub.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            with pytest.raises(OSError):  # no longer accepting
                await asyncio.open_connection("127.0.0.1", hub.port)
            return [await _finish_request(r, w, b) for (r, w), b in zip(started, bodies, strict=True)]

        statuses = asyncio.run(scenario())
        assert statuses == [202, 202, 202]
        assert hub.proc is not None
        assert hub.proc.wait(15) == 0, hub.log_tail()
    finally:
        hub.stop()
        asyncio.run(delete_topology(hub))
