"""Row locks: the one order every service takes them in.

Two transactions that lock rows in opposite orders can deadlock, and PostgreSQL then aborts one of
them. So a transaction that locks rows of several kinds locks them in this order, and the rows of
one kind in ascending id order:

    organisations → buyer requests → matches → listings → voucher programmes → vouchers

A row counts as locked by ``SELECT … FOR NO KEY UPDATE`` and by an ``UPDATE`` of it alike. Services
lock with ``FOR NO KEY UPDATE`` (``select_for_update(no_key=True)``), the lock an ``UPDATE`` takes:
it serialises writers of the row but not an ``INSERT`` elsewhere whose foreign key points at it
(a key-share lock), so a settlement naming a buyer never waits on that buyer's next submission. A service that
would have to lock an earlier kind after a later one splits its work into two transactions instead
(``listing_withdraw``: mark the listing, commit, then fail its matches over), or takes its steps in
this order (``lifecycle_tick``). ``tests/marketplace/test_lock_order.py`` records the locks each
service takes on PostgreSQL and checks them against :data:`LOCK_ORDER`; a race test runs the
lifecycle, a round and a cancellation against each other with no deadlock.

Inserting rows takes no lock another writer waits on here, so inserts may come at any point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.db.models import Model, QuerySet

from marketplace.models import BuyerRequest, Listing, Match, Organisation, Voucher, VoucherProgram

M = TypeVar("M", bound=Model)

#: Kinds of rows in the order a transaction may lock them.
LOCK_ORDER: tuple[type[Model], ...] = (Organisation, BuyerRequest, Match, Listing, VoucherProgram, Voucher)


def rows_locked(rows: type[M] | QuerySet[M], ids: Iterable[int]) -> dict[int, M]:
    """``{id: row}`` of ``ids`` under ``SELECT … FOR UPDATE``, locked in ascending id order.

    ``rows`` is a model or a queryset of it (to join related rows or narrow the set); only the
    model's own rows are locked (``of=("self",)``), never the rows a join reads, and with
    ``FOR NO KEY UPDATE`` (see the module docstring).
    """
    queryset = rows._default_manager.all() if isinstance(rows, type) else rows
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    locked = queryset.select_for_update(of=("self",), no_key=True).filter(pk__in=wanted).order_by("pk")
    return {row.pk: row for row in locked}
