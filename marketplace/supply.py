"""The rules a provider's listing must meet: one set, used when a listing is written and when a round
reads it.

Each rule raises ``InvalidInput`` naming the first bad field, so the API and the pages show it
beside that field; the round's snapshot (``selectors.engine``) runs the same rules and leaves a
row that breaks one out of the round, saying why.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils.translation import gettext

from marketplace.bounds import CALENDAR, GPU_COUNT, LISTING_TIMES, PRICE
from marketplace.errors import InvalidInput
from marketplace.models import NODE_SIZES
from marketplace.rule_messages import outside_calendar, outside_window

#: A listing given no window is available from now for this long.
LISTING_DEFAULT_WINDOW = timedelta(days=30)


def listing_window_default(
    available_from: datetime | None, available_until: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The listing's window with defaults: from ``now``, for ``LISTING_DEFAULT_WINDOW`` (never past
    the calendar, so a far ``available_from`` alone cannot overflow; the rules then refuse it)."""
    start = available_from or now
    if available_until is None:
        available_until = start + LISTING_DEFAULT_WINDOW if start < CALENDAR.end else start
    return start, available_until


def listing_terms_check(
    *,
    gpu_count: int,
    gpus_per_node: int,
    price: Decimal,
    start: datetime,
    end: datetime,
    now: datetime | None,
    window_changed: bool = True,
    floor: Decimal | None = None,
) -> None:
    """Raise ``InvalidInput`` naming the first bad field. ``window_changed`` False (an edit that
    leaves the window alone) or ``now`` None (a round's snapshot of a listing accepted earlier)
    checks the window's order and calendar only, not where it lies against now: a listing that
    opened long ago may still change its price. ``floor``: the listing's interruptible floor
    (``None``: the tier is not offered), above 0 and at most ``price``."""
    if not GPU_COUNT.minimum <= gpu_count <= GPU_COUNT.maximum:
        raise InvalidInput(
            gettext("Must be between %(min)s and %(max)s.") % {"min": GPU_COUNT.minimum, "max": GPU_COUNT.maximum},
            field="gpu_count",
        )
    if gpus_per_node not in NODE_SIZES:
        raise InvalidInput(gettext("Must be 1, 2, 4 or 8."), field="gpus_per_node")
    if gpu_count % gpus_per_node:
        raise InvalidInput(
            gettext("%(n)s GPUs do not fill whole nodes of %(size)s.") % {"n": gpu_count, "size": gpus_per_node},
            field="gpu_count",
        )
    if price <= 0:
        raise InvalidInput(gettext("Must be greater than 0."), field="price_per_gpu_hour")
    if price > PRICE.maximum:
        raise InvalidInput(
            gettext("At most %(max)s CNY per GPU-hour.") % {"max": PRICE.maximum}, field="price_per_gpu_hour"
        )
    if floor is not None and not 0 < floor <= price:
        # The tier sells idle GPUs below list: a floor above the price would never be cheaper.
        raise InvalidInput(
            gettext("Must be greater than 0 and at most the price per GPU-hour (%(price)s).") % {"price": price},
            field="interruptible_floor_price_per_gpu_hour",
        )
    for field, value in (("available_from", start), ("available_until", end)):
        if value.tzinfo is None:
            raise InvalidInput(gettext("Give the time with its offset, e.g. 2026-12-04T09:00+08:00."), field=field)
        if not CALENDAR.first <= value < CALENDAR.end:
            raise InvalidInput(outside_calendar(CALENDAR.first.year, CALENDAR.end.year - 1), field=field)
    if end <= start:
        raise InvalidInput(gettext("Must be after available_from."), field="available_until")
    if not window_changed or now is None:
        return
    if end <= now:
        # A window wholly past (its end at or before the market's now) is refused for the listing
        # and never shown as active; the lifecycle sweep closes one that runs out later.
        past = gettext("Must be in the future: a window wholly past offers nothing.")
        raise InvalidInput(past, field="available_until")
    if not LISTING_TIMES.contains(end, now):
        raise InvalidInput(outside_window(LISTING_TIMES, now), field="available_until")
    if not LISTING_TIMES.contains(start, now):
        raise InvalidInput(outside_window(LISTING_TIMES, now), field="available_from")
