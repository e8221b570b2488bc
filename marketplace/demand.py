"""The rules a buyer's demand must meet: one set, used by request submission, by quotes, and by the
round's snapshot, which leaves a row that breaks one out of the round, saying why."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.utils.translation import gettext

from marketplace.bounds import (
    CALENDAR,
    DURATION_HOURS,
    GPUS_PER_REQUEST,
    LATENCY_WEIGHT,
    MAX_RTT_MS,
    MIN_RELIABILITY,
    PRICE,
    REQUEST_START,
)
from marketplace.errors import InvalidInput
from marketplace.models import NODE_SIZES, BuyerRequest, Organisation
from marketplace.rule_messages import outside_calendar, outside_window
from matching.latency import LatencyClass, latency_class_of

#: A request without ``start_by`` must start within this long.
REQUEST_START_WITHIN = timedelta(hours=24)


def start_by_default(start_by: datetime | None, *, now: datetime) -> datetime:
    """The request's ``start_by``, or ``now`` + ``REQUEST_START_WITHIN`` when none was given."""
    return start_by or now + REQUEST_START_WITHIN


def start_by_check(start_by: datetime, *, now: datetime | None) -> None:
    """Raise ``InvalidInput`` naming ``start_by`` unless it is aware, in the calendar and (``now``
    given) after now within ``REQUEST_START``: the one rule of every form of demand."""
    if start_by.tzinfo is None:
        raise InvalidInput(gettext("Give the time with its offset, e.g. 2026-12-04T09:00+08:00."), field="start_by")
    if not CALENDAR.first <= start_by < CALENDAR.end:
        raise InvalidInput(outside_calendar(CALENDAR.first.year, CALENDAR.end.year - 1), field="start_by")
    if now is not None and start_by <= now:
        raise InvalidInput(gettext("Must be in the future."), field="start_by")
    if now is not None and not REQUEST_START.contains(start_by, now):
        raise InvalidInput(outside_window(REQUEST_START, now), field="start_by")


def demand_terms_check(
    *,
    gpus_per_replica: int,
    replicas: int,
    latency_class: str | None,
    max_rtt_ms: Decimal | None,
    latency_weight: Decimal | None,
    price: Decimal,
    duration_hours: int,
    start_by: datetime,
    now: datetime | None,
) -> str:
    """Raise ``InvalidInput`` naming the first bad field; return the request's latency class.

    The RTT bound is a ``latency_class`` or a ``max_rtt_ms`` (then the class is the one that bound
    falls in); with neither, the request is ``standard`` (≤ 60 ms). ``now`` None checks the terms
    themselves and the calendar, not where ``start_by`` lies against now (a round's snapshot of a
    request accepted earlier).
    """
    if gpus_per_replica not in NODE_SIZES:
        raise InvalidInput(gettext("Must be 1, 2, 4 or 8."), field="gpus_per_replica")
    if replicas <= 0:
        raise InvalidInput(gettext("Must be at least 1."), field="replicas")
    if replicas * gpus_per_replica > GPUS_PER_REQUEST.maximum:
        raise InvalidInput(
            gettext("At most %(n)s GPUs per request.") % {"n": GPUS_PER_REQUEST.maximum}, field="replicas"
        )
    if price <= 0:
        raise InvalidInput(gettext("Must be greater than 0."), field="max_price_per_gpu_hour")
    if price > PRICE.maximum:
        raise InvalidInput(
            gettext("At most %(max)s CNY per GPU-hour.") % {"max": PRICE.maximum}, field="max_price_per_gpu_hour"
        )
    if not DURATION_HOURS.minimum <= duration_hours <= DURATION_HOURS.maximum:
        raise InvalidInput(
            gettext("Must be between %(min)s and %(max)s.")
            % {"min": DURATION_HOURS.minimum, "max": DURATION_HOURS.maximum},
            field="duration_hours",
        )
    start_by_check(start_by, now=now)
    if latency_weight is not None and not LATENCY_WEIGHT.minimum <= latency_weight <= LATENCY_WEIGHT.maximum:
        raise InvalidInput(
            gettext("Must be between %(min)s and %(max)s.")
            % {"min": LATENCY_WEIGHT.minimum, "max": LATENCY_WEIGHT.maximum},
            field="latency_weight",
        )
    return _latency_class_for(latency_class=latency_class, max_rtt_ms=max_rtt_ms)


def _latency_class_for(*, latency_class: str | None, max_rtt_ms: Decimal | None) -> str:
    if latency_class is not None and max_rtt_ms is not None:
        raise InvalidInput(gettext("Give latency_class or max_rtt_ms, not both."), field="max_rtt_ms")
    if max_rtt_ms is not None:
        if max_rtt_ms <= 0:
            raise InvalidInput(gettext("Must be greater than 0."), field="max_rtt_ms")
        if max_rtt_ms > MAX_RTT_MS.maximum:
            raise InvalidInput(gettext("At most %(max)s ms.") % {"max": MAX_RTT_MS.maximum}, field="max_rtt_ms")
        return latency_class_of(float(max_rtt_ms)).value
    if latency_class is None:
        return LatencyClass.STANDARD.value
    if latency_class not in LatencyClass.__members__.values():
        raise InvalidInput(
            gettext('"%(value)s" is not a latency class.') % {"value": latency_class}, field="latency_class"
        )
    return latency_class


def demand_request_build(*, buyer: Organisation, now: datetime, **terms) -> BuyerRequest:
    """An unsaved request from ``terms`` (``request_submit``'s keywords), checked against the rules."""
    terms["latency_class"] = demand_terms_check(
        gpus_per_replica=terms["gpus_per_replica"],
        replicas=terms["replicas"],
        latency_class=terms.get("latency_class"),
        max_rtt_ms=terms.get("max_rtt_ms"),
        latency_weight=terms.get("latency_weight"),
        price=terms["max_price_per_gpu_hour"],
        duration_hours=terms["duration_hours"],
        start_by=terms["start_by"],
        now=now,
    )
    least = terms.get("min_reliability")
    if least is not None and not MIN_RELIABILITY.minimum <= least <= MIN_RELIABILITY.maximum:
        raise InvalidInput(gettext("Must be from 0 to 1."), field="min_reliability")
    return BuyerRequest(buyer=buyer, **terms)
