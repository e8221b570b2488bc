"""``bench/attacks.py`` end to end: issue 14's findings replayed over HTTP against the shipped
command lines (the Dockerfile's gunicorn, docker-compose's worker and beat) hold, every one.

The short run replays the findings that take seconds (1, 2, 5, 6, 7); ``LONG_TESTS=1`` adds the
Redis kills (3) and the slow clients (4), which their own tests hold in the short run too
(``tests/reliability``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import LONG_TESTS, need_service
from tests.workers import ROOT

pytestmark = pytest.mark.services

FINDINGS = "1,2,3,4,5,6,7" if LONG_TESTS else "1,2,5,6,7"


def attacks_database_url() -> str:
    """A database of its own beside the test database (the script drops and recreates it)."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}_attacks"


def test_every_finding_replayed_against_the_shipped_commands_holds(postgres, tmp_path):
    if shutil.which("redis-server") is None:
        need_service("the replay runs a redis-server of its own: redis-server is not on PATH")
    outcomes_path = tmp_path / "attacks.json"
    command = [sys.executable, "bench/attacks.py", "--only", FINDINGS, "--database-url", attacks_database_url()]
    command += ["--json", str(outcomes_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    output = done.stdout + done.stderr[-4000:]
    assert done.returncode == 0, output
    outcomes = json.loads(outcomes_path.read_text())
    assert {line["finding"] for line in outcomes} == {int(n) for n in FINDINGS.split(",")}, output
    assert all(line["held"] for line in outcomes), output
    # Each hostile input of finding 2, each spoof of finding 7: a line each, not one line for all.
    assert sum(line["finding"] == 2 for line in outcomes) > 10, output
    assert sum(line["finding"] == 7 for line in outcomes) > 5, output
