"""Every service locks rows in the one order of ``services.locking``, so writers never deadlock.

On PostgreSQL: the locks each service takes are recorded from its SQL and checked against
``LOCK_ORDER``, transaction by transaction; then the lifecycle tick (failing over a failed node),
a round and a cancellation race each other many times.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections

from marketplace import services
from marketplace.market_time import market_now
from marketplace.models import BuyerRequest, Listing, Match, Region
from marketplace.services.listings import _listing_mark_failed_nodes
from marketplace.services.locking import LOCK_ORDER
from marketplace.services.rounds import round_run
from tests.conftest import scale
from tests.services_helpers import assert_no_gpu_held_twice, race

RANK = {model._meta.db_table: rank for rank, model in enumerate(LOCK_ORDER)}
KIND = {model._meta.db_table: model.__name__ for model in LOCK_ORDER}
FOR_UPDATE = re.compile(r"FOR (?:NO KEY )?UPDATE(?: OF (?P<of>[^)]+?))?(?: NOWAIT| SKIP LOCKED)?$")


def locked_tables(sql: str) -> list[str]:
    """Tables whose rows ``sql`` locks for writing: ``SELECT … FOR UPDATE [OF …]`` and ``UPDATE``.
    (An INSERT's foreign-key checks take KEY SHARE locks, which no lock taken here waits on.)"""
    sql = " ".join(sql.split())
    if sql.startswith("UPDATE "):
        return re.findall(r'^UPDATE "(\w+)"', sql)
    match = FOR_UPDATE.search(sql)
    if not match:
        return []
    if match["of"]:
        return re.findall(r'"(\w+)"', match["of"])
    return re.findall(r'(?:FROM|JOIN) "(\w+)"', sql)


class LockLog:
    """The kinds of rows each transaction of the connection locked, in order, by service."""

    def __init__(self):
        self.service = "?"
        self.current: list[str] = []
        self.transactions: list[tuple[str, list[str]]] = []

    def __call__(self, execute, sql, params, many, context):
        self.current += [table for table in locked_tables(sql) if table in RANK]
        return execute(sql, params, many, context)

    def end(self):
        """A commit or rollback: the transaction so far belongs to the service running now."""
        if self.current:
            self.transactions.append((self.service, self.current))
        self.current = []

    def out_of_order(self) -> list[tuple[str, list[str]]]:
        """Transactions that took a kind of row earlier in the order than one they already held.
        Touching a kind again (a ``SubsidyBook`` updating the programmes it locked) takes no new
        lock: the rows were locked when the kind first came up."""
        bad = []
        for service, tables in self.transactions:
            seen: list[int] = []
            for rank in (RANK[table] for table in tables):
                if rank not in seen and seen and rank < max(seen):
                    bad.append((service, [KIND[table] for table in tables]))
                    break
                seen.append(rank)
        return bad

    def kinds_locked_by(self, service: str) -> set[str]:
        return {KIND[table] for name, tables in self.transactions if name == service for table in tables}


@pytest.fixture
def lock_log(monkeypatch):
    """Record the row locks of the test's own connection, split at every commit and rollback."""
    connection, log = connections["default"], LockLog()
    for name in ("commit", "rollback"):
        original = getattr(connection, name)

        def ended(original=original):
            log.end()
            return original()

        monkeypatch.setattr(connection, name, ended)
    with connection.execute_wrapper(log):
        yield log


@pytest.fixture
def make_program(reference, now):
    def make(**overrides):
        fields = {
            "name": "Ningxia compute voucher",
            "sponsor": "Ningxia government",
            "percent": Decimal("30"),
            "budget": Decimal("100000"),
            "valid_from": now - timedelta(days=1),
            "valid_until": now + timedelta(days=365),
        }
        return services.voucher_program_create(**{**fields, **overrides})

    return make


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
def test_every_service_locks_rows_in_the_lock_order(
    postgres, reference, make_listing, make_request, make_program, provider, buyer, lock_log
):
    def as_service(name, call):
        lock_log.service = name
        try:
            return call()
        finally:
            lock_log.service = "?"

    program = make_program()
    code = services.vouchers_issue(program_id=program.pk, sponsor_provider=None, count=1)[0].code
    listing = make_listing(gpu_count=32)
    other = make_listing(gpu_count=16, region=Region.objects.get(code="gansu-qingyang"))
    vouchered = as_service(
        "request_submit",
        lambda: make_request(gpus_per_replica=8, replicas=2, latency_class="batch", voucher_code=code),
    )
    cancelled = make_request(gpus_per_replica=4, replicas=2, latency_class="batch")
    stopped = make_request(gpus_per_replica=2, replicas=1, latency_class="batch")
    as_service("round", lambda: round_run(shard="h20", trigger="manual"))
    assert Match.objects.filter(request=vouchered).exists()
    assert Match.objects.filter(request=cancelled).exists()
    as_service("listing_update", lambda: services.listing_update(
        listing_id=other.pk, provider=provider, changes={"price_per_gpu_hour": Decimal("5.50")}
    ))
    as_service("request_cancel", lambda: services.request_cancel(request_id=cancelled.pk, buyer=buyer))
    stop = Match.objects.get(request=stopped, status__in=Match.LIVE_STATUSES)
    as_service("match_cancel", lambda: services.match_cancel(match_id=stop.pk, buyer=buyer, now=market_now()))
    on_node = Match.objects.filter(status__in=Match.LIVE_STATUSES).order_by("pk").first()
    _listing_mark_failed_nodes(listing_id=on_node.listing_id, provider=provider, nodes=[on_node.nodes[0]])
    make_request(start_by=market_now() + timedelta(seconds=30))  # the tick below expires it
    as_service("lifecycle_tick", lambda: services.lifecycle_tick(now=market_now() + timedelta(minutes=1)))
    as_service("listing_nodes_fail", lambda: services.listing_nodes_fail(
        listing_id=other.pk, provider=provider, nodes=[0]
    ))
    as_service("listing_withdraw", lambda: services.listing_withdraw(listing_id=listing.pk, provider=provider))
    as_service("lifecycle_tick", lambda: services.lifecycle_tick(now=market_now() + timedelta(days=2)))

    assert lock_log.out_of_order() == []
    # Each service under test took the locks it should have, so the check above was not vacuous.
    assert {"BuyerRequest", "Listing", "VoucherProgram", "Voucher"} <= lock_log.kinds_locked_by("round")
    assert {"BuyerRequest", "Match", "Listing"} <= lock_log.kinds_locked_by("lifecycle_tick")
    assert {"BuyerRequest", "Match", "Listing"} <= lock_log.kinds_locked_by("request_cancel")
    assert {"Match", "Listing"} <= lock_log.kinds_locked_by("match_cancel")
    assert {"Organisation", "Voucher"} <= lock_log.kinds_locked_by("request_submit")
    assert {"Listing"} <= lock_log.kinds_locked_by("listing_withdraw")
    assert {"Listing"} <= lock_log.kinds_locked_by("listing_nodes_fail")


@pytest.mark.django_db(transaction=True)
@pytest.mark.services
@pytest.mark.parametrize("attempt", range(scale(5, 40)))
def test_the_tick_a_round_and_a_cancellation_racing_never_deadlock(
    postgres, reference, make_listing, make_request, provider, buyer, attempt
):
    """The tick fails over a failed node's matches (locking their requests, matches and listings),
    a round places new demand (requests, listings) and a buyer cancels a placed request
    (its request, matches, listings), all at once: no deadlock, and no GPU held twice."""
    ningxia = make_listing(gpu_count=32)
    make_listing(gpu_count=16, region=Region.objects.get(code="gansu-qingyang"))
    placed = [make_request(gpus_per_replica=size, replicas=2, latency_class="batch") for size in (8, 4, 2, 1)]
    round_run(shard="h20", trigger="manual")
    on_ningxia = Match.objects.filter(listing=ningxia).order_by("pk").first()
    _listing_mark_failed_nodes(listing_id=ningxia.pk, provider=provider, nodes=[on_ningxia.nodes[0]])
    for size in (4, 2, 1):
        make_request(gpus_per_replica=size, replicas=2, latency_class="batch")
    cancelled = placed[(attempt + 1) % len(placed)]
    at = market_now() + timedelta(minutes=1)

    outcomes = race(
        lambda: services.lifecycle_tick(now=at),
        lambda: round_run(shard="h20", trigger="manual"),
        lambda: services.request_cancel(request_id=cancelled.pk, buyer=buyer, now=at),
    )

    assert [o for o in outcomes if isinstance(o, Exception)] == [], outcomes
    assert_no_gpu_held_twice()
    ningxia.refresh_from_db()
    on_failed = [
        m.pk for m in Match.objects.filter(listing=ningxia, status__in=Match.LIVE_STATUSES)
        if set(m.nodes) & set(ningxia.failed_nodes)
    ]
    assert on_failed == [], "a live match was left on a failed node"
    assert BuyerRequest.objects.get(pk=cancelled.pk).status == BuyerRequest.Status.CANCELLED
    assert not Match.objects.filter(request=cancelled, status__in=Match.LIVE_STATUSES).exists()
    assert Listing.objects.filter(allocated_gpus__lt=0).count() == 0
