"""``bench/load.py`` end to end, briefly: gunicorn, a real worker, wrk; every row printed, every
answer a 2xx, no socket error, every submitted request matched.

Throughput is the script's figure to print (``make load``), not this test's to assert: the machine
running the suite is shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import need_service, scale
from tests.workers import free_port

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[1]
WRK = Path("/usr/bin/wrk")
ENDPOINTS = ["trivial", "capacity search", "listing search", "request submission"]
LEVELS = [2, 4]


def load_database_url() -> str:
    """A database of its own beside the test database (the script drops and recreates it)."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}_load"


def test_load_script_serves_every_request(postgres, redis_url, tmp_path):
    if not WRK.exists():
        need_service(f"the load test needs {WRK} (make tools installs it)")
    figures_path, probes = tmp_path / "load.json", scale(3, 20)
    command = [sys.executable, "bench/load.py", "--duration", str(scale(2, 10)), "--probes", str(probes)]
    command += ["--connections", ",".join(map(str, LEVELS)), "--listings", "120", "--buyers", "10", "--workers", "2"]
    # The cache shares the broker's Redis database, not the suite's cache: a shard lock that a worker
    # killed by a fault test left behind there would hold up this run's rounds for minutes.
    command += ["--database-url", load_database_url(), "--broker-url", redis_url, "--cache-url", redis_url]
    command += ["--port", str(free_port()), "--json", str(figures_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=scale(300, 900), check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    figures = json.loads(figures_path.read_text())

    rows = {(row["endpoint"], row["connections"]): row for row in figures["rows"]}
    assert sorted(rows) == sorted((name, level) for name in ENDPOINTS for level in LEVELS), output
    for (name, level), row in rows.items():
        assert row["requests"] > 0, (name, level, output)
        assert (row["non2xx"], row["socket_errors"]) == (0, 0), (name, level, row["sample"], output)
        printed = [line.split() for line in done.stdout.splitlines() if line.startswith(name)]
        assert any(cells[len(name.split())] == str(level) for cells in printed), (name, level, done.stdout)
    for backlog in figures["backlogs"]:
        # Every answered POST committed a request; a few more may commit as wrk cuts off in flight.
        assert backlog["answered"] <= backlog["created"] <= backlog["answered"] + backlog["connections"], backlog
        assert backlog["drain_s"] is not None, backlog

    probe = figures["probe"]
    assert probe["count"] == len(probe["samples_s"]) == probes, probe
    background = probe["background"]
    assert background["requests"] > 0, background
    assert (background["non2xx"], background["socket_errors"]) == (0, 0), background
    assert "POST -> matched under search load" in done.stdout, done.stdout
