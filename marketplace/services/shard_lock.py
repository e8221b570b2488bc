"""The shard lock: at most one round per shard (GPU model) at a time, across every process.

A round covering several GPU models (a component that inference demand couples, see
``services.rounds``) holds each one's lock (:func:`shard_locks`): one lock per GPU model, so no
two rounds whose GPU models overlap ever run at once, whatever sets of models they cover.

The lock must not outlive a worker killed with ``kill -9`` (or by its hard time limit): otherwise
that shard stops matching until a timeout passes, far longer than the sweep interval users are
promised.

- On PostgreSQL it is a *session-level* advisory lock. The server releases it when the holder's
  connection ends, whatever ended it, so a dead worker's lock dies with its connection.
  ``client_connection_check_interval`` makes a backend notice its client is gone even while it
  waits on a row lock, so not even a blocked query keeps a dead worker's lock alive. (Session
  locks need a session per client: no transaction-pooling proxy between workers and PostgreSQL.)
- On other databases (SQLite: the single-process demo, where nobody kills workers) it is a cache
  key with a timeout: a killed holder's lock frees itself after ``CACHE_LOCK_SECONDS``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager

from django.core.cache import cache
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


#: First key of the shard locks' advisory keys (an arbitrary constant: "mkt1"), so that other
#: advisory locks in the same database cannot collide with them.
ADVISORY_NAMESPACE = 0x6D6B7431
#: How long the cache lock of a killed holder outlives it (longer than any round's hard time limit).
CACHE_LOCK_SECONDS = 300
#: How often a backend polls its client's socket while running a query (PostgreSQL ≥ 14).
CLIENT_CHECK_MS = 1000


@contextmanager
def shard_lock(shard: str) -> Iterator[bool]:
    """Try to hold ``shard``'s matching lock for the ``with`` block, without waiting.

    Yields True while held, or False if another connection holds it; then nothing is held and
    the block should do nothing. On PostgreSQL a second ``shard_lock`` of the same shard on the
    *same* connection would also succeed (advisory locks count per session): never nest them.
    """
    lock = _advisory_lock if connection.vendor == "postgresql" else _cache_lock
    with lock(shard) as held:
        yield held


class ShardLocks:
    """The locks of a set of GPU models, held together (:func:`shard_locks`); more may be added."""

    def __init__(self, stack: ExitStack):
        self._stack = stack
        self.held: set[str] = set()

    def add(self, codes: Iterable[str]) -> bool:
        """Try to take the lock of each of ``codes`` not held yet, in sorted order, without waiting.
        True when every one is held now; False when another round holds one (those taken stay
        held until the ``with`` block ends: the caller gives up the round)."""
        for code in sorted(set(codes) - self.held):
            if not self._stack.enter_context(shard_lock(code)):
                return False
            self.held.add(code)
        return True


@contextmanager
def shard_locks() -> Iterator[ShardLocks]:
    """Hold the locks :meth:`ShardLocks.add` takes for the ``with`` block; every one is released
    when it ends, in the reverse order. Never waiting, taking them in sorted order, two rounds over
    overlapping sets of GPU models cannot deadlock: one of them finds a lock held and gives up."""
    with ExitStack() as stack:
        yield ShardLocks(stack)


def shard_locked(shard: str) -> bool:
    """Whether some round holds ``shard``'s lock right now (one query, or one cache read)."""
    if connection.vendor != "postgresql":
        return cache.get(_cache_lock_key(shard)) is not None
    classid, objid = advisory_key(shard)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 2)",
            [classid & 0xFFFFFFFF, objid & 0xFFFFFFFF],
        )
        return cursor.fetchone()[0]


def advisory_key(shard: str) -> tuple[int, int]:
    """The two int4 keys of ``shard``'s advisory lock. Two shards whose names share a CRC-32 would
    share a lock: they would only take turns, never run a round unlocked."""
    crc = zlib.crc32(shard.encode())
    return ADVISORY_NAMESPACE, crc - (1 << 32) if crc >= 1 << 31 else crc


@contextmanager
def _advisory_lock(shard: str) -> Iterator[bool]:
    keys = advisory_key(shard)
    with connection.cursor() as cursor:
        if connection.get_database_version() >= (14,):
            cursor.execute("SELECT set_config('client_connection_check_interval', %s, false)", [str(CLIENT_CHECK_MS)])
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", keys)
        held = cursor.fetchone()[0]
    session = connection.connection  # the lock belongs to this very session
    try:
        yield held
    finally:
        if held:
            _advisory_unlock(keys, session)


def _advisory_unlock(keys: tuple[int, int], session) -> None:
    """Release the lock taken on ``session``. If that session is gone (the round closed its
    connection when it was aborted), the server already released the lock with it."""
    if connection.connection is not session:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
    except DatabaseError:
        # A session that cannot run the unlock (an aborted transaction around us) must not keep
        # the lock for its lifetime: ending the session releases it.
        logger.exception("could not release shard lock %s; closing the connection to free it", keys)
        if not connection.in_atomic_block:
            connection.close()


def _cache_lock_key(shard: str) -> str:
    return f"matching:shard-lock:{shard}"


@contextmanager
def _cache_lock(shard: str) -> Iterator[bool]:
    key = _cache_lock_key(shard)
    held = cache.add(key, 1, timeout=CACHE_LOCK_SECONDS)
    try:
        yield held
    finally:
        if held:
            cache.delete(key)
