"""``GET /healthz``: are the database, the broker and the shared cache reachable?

200 when every server is; 503 naming the one that is not, so that an orchestrator (the compose
healthcheck) sees a Redis outage, during which the API answers writes with 503 too. Each check is
bounded (``REDIS_TIMEOUT_SECONDS`` for Redis), so a frozen Redis cannot hang the health check.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

from config.celery_app import app as celery_app


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _broker_ok() -> bool | None:
    """None when the broker is embedded (filesystem, memory): there is no server to reach.

    The app's own connection carries the transport's socket timeouts; one attempt, no retries.
    """
    if settings.CELERY_BROKER_URL.startswith(("filesystem://", "memory://")):
        return None
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=0)
        return True
    except Exception:
        return False


def _cache_ok() -> bool | None:
    """None when the cache is in this process or on local disk: there is no server to reach."""
    if not settings.CACHES["default"]["BACKEND"].endswith(".RedisCache"):
        return None
    try:
        cache.get("healthz:probe")  # any round trip: an unreachable Redis raises
        return True
    except Exception:
        return False


def healthz(request):
    checks = {"database": _database_ok(), "broker": _broker_ok(), "cache": _cache_ok()}
    healthy = all(ok is not False for ok in checks.values())
    body = {name: {True: "ok", False: "unreachable", None: "embedded"}[ok] for name, ok in checks.items()}
    return JsonResponse(body, status=200 if healthy else 503)
