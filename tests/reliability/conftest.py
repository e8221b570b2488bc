"""Fixtures the reliability tests share."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import need_service
from tests.workers import PrivateRedis


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own (``tests.workers.PrivateRedis``), stopped after it."""
    binary = shutil.which("redis-server")
    if binary is None:
        need_service("redis-server is not on PATH; the Redis outage tests start and stop their own")
    server = PrivateRedis(binary, tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()
