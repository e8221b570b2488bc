"""Shared fixtures: reference data, organisations with their users, API clients, factories.

Tests that need the real servers (PostgreSQL row locks, Redis, a Celery worker) use the
``postgres`` / ``redis_url`` fixtures: they skip with a reason locally and fail under
``REQUIRE_SERVICES=1`` (CI), so a missing server can never turn CI green.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone, translation
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import GpuModel, Membership, Organisation, Region

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
#: The long variants of the reliability and load tests (``.ci/run`` sets ``LONG_TESTS=1``); without
#: it the same tests run a shorter version of themselves.
LONG_TESTS = os.environ.get("LONG_TESTS") == "1"


def scale(short: int, long: int) -> int:
    """How many times (rounds, kills, examples…) a test repeats: ``long`` under LONG_TESTS=1."""
    return long if LONG_TESTS else short


def need_service(reason: str) -> None:
    """Fail under REQUIRE_SERVICES=1, skip otherwise, saying which server is missing and why."""
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _language_reset():
    """Every test starts in the default language. A page request through Django's test client runs
    ``LocaleMiddleware`` in the test's own thread, which leaves the request's language (zh-hans from
    an ``Accept-Language`` header or the language cookie) active after the response: without this,
    the next test's messages came out in Chinese, depending on which tests ran before it."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        need_service("this test needs PostgreSQL row locks (set DATABASE_URL=postgres://…; SQLite does not lock rows)")


@pytest.fixture
def redis_url():
    import redis

    url = os.environ.get("CELERY_BROKER_URL", "")
    if not url.startswith("redis://"):
        need_service("this test needs Redis (set CELERY_BROKER_URL=redis://…)")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        need_service(f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Load the reference data once into the test database; tests roll back around it.

    At the end, sessions that threads or worker processes left open on a PostgreSQL test database
    are ended, so that it can be dropped.
    """
    with django_db_blocker.unblock():
        services.reference_load(data=services.reference_read())
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def reference(db):
    """Regions, RTTs and GPU models (reloaded if a transactional test flushed them)."""
    if not Region.objects.exists():
        services.reference_load(data=services.reference_read())


@pytest.fixture
def now():
    return timezone.now()


def member(username: str, organisation: Organisation, **extra):
    user = get_user_model().objects.create_user(username=username, password="pw-for-tests-1", **extra)
    Membership.objects.create(user=user, organisation=organisation)
    return user


@pytest.fixture
def provider(db):
    return Organisation.objects.create(name="Zhongwei Desert Compute", kind="provider")


@pytest.fixture
def other_provider(db):
    return Organisation.objects.create(name="Ulanqab Green DC", kind="provider")


@pytest.fixture
def buyer(db):
    return Organisation.objects.create(name="Huangpu Chat AI", kind="buyer")


@pytest.fixture
def other_buyer(db):
    return Organisation.objects.create(name="Zhongguancun Models", kind="buyer")


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def clients(reference, provider, other_provider, buyer, other_buyer):
    """API clients by role: owner roles are ``provider`` and ``buyer``."""
    staff = get_user_model().objects.create_user(username="staff", password="pw-for-tests-1", is_staff=True)
    return {
        "provider": client_for(member("prov", provider)),
        "other_provider": client_for(member("prov2", other_provider)),
        "buyer": client_for(member("buy", buyer)),
        "other_buyer": client_for(member("buy2", other_buyer)),
        "anonymous": client_for(),
        "staff": client_for(staff),
    }


@pytest.fixture
def make_listing(reference, provider, now):
    def make(**overrides):
        fields = {
            "provider": provider,
            "region": Region.objects.get(code="ningxia-zhongwei"),
            "gpu_model": GpuModel.objects.get(code="h20"),
            "gpu_count": 16,
            "gpus_per_node": 8,
            "price_per_gpu_hour": Decimal("6.00"),
            "available_from": now - timedelta(hours=1),
            "available_until": now + timedelta(days=30),
        }
        fields.update(overrides)
        for key, model in (("region", Region), ("gpu_model", GpuModel)):
            if isinstance(fields[key], str):
                fields[key] = model.objects.get(code=fields[key])
        return services.listing_create(**fields)

    return make


@pytest.fixture
def make_request(reference, buyer, now):
    def make(**overrides):
        fields = {
            "buyer": buyer,
            "gpu_model": GpuModel.objects.get(code="h20"),
            "gpus_per_replica": 1,
            "replicas": 2,
            "origin": Region.objects.get(code="shanghai"),
            "latency_class": "standard",
            "max_price_per_gpu_hour": Decimal("10.00"),
            "duration_hours": 24,
            "start_by": now + timedelta(hours=6),
        }
        fields.update(overrides)
        for key, model in (("origin", Region), ("gpu_model", GpuModel)):
            if isinstance(fields[key], str):
                fields[key] = model.objects.get(code=fields[key])
        return services.request_submit(**fields)

    return make
