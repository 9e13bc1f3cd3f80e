"""Routing changes without a restart: the admin reload call, SIGHUP, a broken file, `hub parties add`."""

from __future__ import annotations

import asyncio
import shutil
import signal
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.berichten import example, with_header
from tests.support.hubproc import REPO, HubProcess, delete_topology, prepare_hub, run_cli

pytestmark = [pytest.mark.rabbitmq]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    rules = tmp_path / "routing_rules"
    shutil.copytree(REPO / "routing_rules", rules)
    hub = prepare_hub(
        f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite'}",
        tmp_path,
        {"gemeente": "0363"},
        HUB_ROUTING_RULES=str(rules),
    )
    hub.start()
    yield hub
    hub.stop()
    asyncio.run(delete_topology(hub))


def _add_aanbieder(hub: HubProcess, code: str) -> None:
    with (Path(hub.env["HUB_ROUTING_RULES"]) / "parties.csv").open("a") as f:
        f.write(f"aanbieder,{code},Nieuwe Zorg {code},,\n")


async def _send_301(
    session: aiohttp.ClientSession, hub: HubProcess, ontvanger: str
) -> tuple[int, dict[str, Any]]:
    body = with_header(
        example("iwmo-3.2", "WMO301"),
        afzender="0363",
        ontvanger=ontvanger,
        identificatie=uuid.uuid4().hex[:12],
        dagtekening=date(2026, 1, 5),
    )
    headers = {"Authorization": f"Bearer {hub.tokens['gemeente']}", "Content-Type": "application/xml"}
    async with session.post(f"{hub.url}/v1/berichten", data=body, headers=headers) as r:
        return r.status, await r.json()


async def _reload(session: aiohttp.ClientSession, hub: HubProcess, token: str) -> tuple[int, dict[str, Any]]:
    async with session.post(
        f"{hub.url}/v1/admin/routes/reload", headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json()


async def test_rules_change_by_admin_call_and_sighup_and_a_broken_file_keeps_the_old_rules(
    hub: HubProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        status, answer = await _send_301(session, hub, "55555555")
        assert (status, answer["error"]["code"]) == (422, "unknown_receiver")

        # Only the admin may reload.
        assert (await _reload(session, hub, hub.tokens["gemeente"]))[0] == 403
        _add_aanbieder(hub, "55555555")
        status, result = await _reload(session, hub, hub.env["HUB_ADMIN_TOKEN"])
        assert status == 200 and result["ok"], result
        assert (await _send_301(session, hub, "55555555"))[0] == 202

        # A broken file is refused with file:line, and the rules in force stay.
        mergers = Path(hub.env["HUB_ROUTING_RULES"]) / "mergers.csv"
        good = mergers.read_text()
        mergers.write_text(good + "12,0363,not-a-date\n")
        status, result = await _reload(session, hub, hub.env["HUB_ADMIN_TOKEN"])
        assert status == 422 and not result["ok"] and any("mergers.csv:" in e for e in result["errors"]), (
            result
        )
        assert (await _send_301(session, hub, "55555555"))[0] == 202
        mergers.write_text(good)

        # SIGHUP reloads too.
        _add_aanbieder(hub, "66666666")
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            status, _answer = await _send_301(session, hub, "66666666")
            if status == 202:
                break
            await asyncio.sleep(0.1)
        assert status == 202


async def test_an_aanbieder_registered_at_run_time_can_receive(hub: HubProcess) -> None:
    run_cli(hub.env, "parties", "add", "--kind", "aanbieder", "--code", "77777777", "--name", "Later B.V.")
    async with aiohttp.ClientSession() as session:
        status, answer = await _send_301(session, hub, "77777777")
    assert status == 202, answer
    assert answer["receiver"] == "aanbieder:77777777"
