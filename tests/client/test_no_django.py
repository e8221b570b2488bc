"""The SDK and CLI are a client of the API: importing them loads no Django, DRF, Celery or server
code, so `pip install ./client` works for anyone with httpx, click and rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "client"
SERVER_SIDE = ("django", "rest_framework", "celery", "marketplace", "config", "matching")


def test_importing_the_sdk_and_cli_loads_no_server_side_package():
    probe = (
        "import sys, gpumkt, gpumkt.cli; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_SIDE!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(CLIENT)!r}); {probe}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
