"""A real Prometheus for the tests: its own process, temp config and storage, a free port.

`tuned_rules` makes the test variant of monitoring/prometheus/alerts.yml: the same file with chosen
thresholds, windows and `for:` durations replaced inside named alerts, so an alert can fire within
seconds; every replacement must match, so the variant fails loudly when the real file changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.hubproc import REPO, free_port

ALERTS = REPO / "monitoring" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "hub.json"


def names_and_labels(exposition: str) -> str:
    """Every sample's name and label values of a text exposition, without the values: a value is a
    number the hub computes, whose digits may hold any string (a test looking for an id there fails
    by chance)."""
    return " ".join(
        f"{s.name} {' '.join(s.labels.values())}"
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    )


def require_tool(name: str) -> str:
    """The path of a Prometheus tool; a skip outside CI, a failure under scripts/test.sh (and CI)."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        message = f"{name} is not installed (Debian package prometheus; scripts/test.sh installs it)"
        if os.environ.get("HUB_REQUIRE_SERVERS"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def tuned_rules(text: str, changes: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """Replace (old, new) inside the named alerts' rule blocks; every old must occur in its block."""
    parts = re.split(r"(?m)^(?=[ \t]*- alert: )", text)
    seen: set[str] = set()
    out = []
    for part in parts:
        m = re.match(r"[ \t]*- alert: (\S+)", part)
        if m and m.group(1) in changes:
            name = m.group(1)
            seen.add(name)
            for old, new in changes[name]:
                if old not in part:
                    raise AssertionError(f"{old!r} is not in alert {name} any more: update the test's tuning")
                part = part.replace(old, new)
        out.append(part)
    missing = set(changes) - seen
    if missing:
        raise AssertionError(f"no such alerts in {ALERTS}: {sorted(missing)}")
    return "".join(out)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=5) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields one series (None while it yields none)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, what: str, check: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(
            f"Prometheus: {what} not seen within {timeout}s (last: {last!r})\n{self.log_tail()}"
        )

    def firing(self) -> dict[str, list[dict[str, str]]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        out: dict[str, list[dict[str, str]]] = {}
        for a in alerts:
            if a["state"] == "firing":
                out.setdefault(a["labels"]["alertname"], []).append(a["labels"])
        return out

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""


@contextmanager
def prometheus(
    tmp: Path, targets: Sequence[str], rules: str, *, interval: str = "1s"
) -> Iterator[Prometheus]:
    """Prometheus scraping `targets` (host:port) as job "hub" every `interval`, with `rules` loaded."""
    binary = require_tool("prometheus")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "rules.yml").write_text(rules)
    (tmp / "prometheus.yml").write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "rule_files": [str(tmp / "rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "hub",
                        "scrape_interval": interval,
                        "scrape_timeout": interval,
                        "static_configs": [{"targets": list(targets)}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log_path = tmp / "prometheus.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
    p = Prometheus(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}: {p.log_tail()}")
            try:
                with urllib.request.urlopen(f"{p.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready within 30s: {p.log_tail()}")
            time.sleep(0.1)
        yield p
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
