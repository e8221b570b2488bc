"""``GET /healthz``: is the database reachable, and the broker when one is a server?"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from kombu import Connection


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool | None:
    """None when the broker is embedded (filesystem, memory): there is no server to reach."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("filesystem://", "memory://")):
        return None
    try:
        with Connection(url, connect_timeout=2) as broker:
            broker.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def healthz(request):
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    healthy = all(ok is not False for ok in checks.values())
    body = {name: {True: "ok", False: "unreachable", None: "embedded"}[ok] for name, ok in checks.items()}
    return JsonResponse(body, status=200 if healthy else 503)
