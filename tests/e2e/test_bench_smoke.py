"""The benchmark harness, run once with a tiny budget so that it keeps working (no timing asserted).

`python -m bench` starts a real `hub serve` on SQLite and a separate load-generator process; this
checks that the run ends by itself, measures something, keeps the durability promise and writes its
raw JSON, not how fast anything was.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.support.hubproc import REPO

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def test_a_tiny_bench_run_measures_and_checks_durability() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "hub.sqlite.4k.c64",
            "--rounds",
            "1",
            "--seconds",
            "0.5",
            "--no-doc",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.search(r"raw results: bench/results/(bench-[0-9-]+\.json)", done.stdout)
    assert found, done.stdout[-2000:]
    path = REPO / "bench" / "results" / found.group(1)
    try:
        raw = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    runs = raw["results"]
    text = json.dumps(runs)
    assert "hub.sqlite.4k.c64" in text
    durable = raw["checks"]["durable"]["sqlite"]
    assert durable["ok"] is True and durable["answered_2xx"] > 0, durable
