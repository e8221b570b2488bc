"""Monthly spend caps: what a request commits against its organisation's and its API key's month.

A request counts against the caps of the month it was submitted in (UTC, market time) from the
moment it is accepted: its worst case (``money.worst_case_charge`` at its price cap, for every
GPU-hour it asks for) is reserved in the same transaction that inserts it, so no round can ever
match more than the cap allows — matching stops at it. When no round will match the request
again (cancelled, expired, fully matched, or past its ``start_by`` only partly served), the
reservation shrinks to what it was charged plus the worst case of its matches still running (at
their prices, which may be below the request's cap); the lifecycle tick keeps this month's such
requests current as their matches end.

After a fail-over the failed match's GPU-hours before the failure are charged and its replicas are
open again for their full duration. The fail-over grows the request's reservation back to what
placing them at its price cap could cost, as far as the organisation's and the key's caps allow
(``requests_spend_regrow``, under the organisation's row lock like a submission), and a round offers
only as many of them as the reservation then covers (``selectors.spend_placeable_replicas``): the
charges stay inside the reservation, and the reservations inside the caps.

Concurrency: every submission of an organisation (through any of its keys) holds the
organisation's row lock (``FOR NO KEY UPDATE``, the first kind in ``services.locking``) while it
sums its month and inserts, so fifty concurrent submissions count one after another and never pass
a cap together. Shrinking a reservation needs no such lock: it only ever lowers a sum.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Sum
from django.utils.translation import gettext, gettext_noop

from marketplace.errors import SpendCapExceeded
from marketplace.models import ApiKey, BuyerRequest, Organisation
from marketplace.money import FEN, worst_case_charge
from marketplace.selectors.spend import replicas_worst_case, requests_spend_used
from matching.inference_quote import budget_per_hour

ZERO = Decimal("0")
#: What a request past a cap is told, per cap (translated when raised, so the reader's language).
ORGANISATION_CAP_FULL = gettext_noop(
    "This request may cost up to %(worst)s CNY; the organisation's monthly spend cap is %(cap)s CNY "
    "and %(committed)s CNY of it is committed for %(month)s."
)
API_KEY_CAP_FULL = gettext_noop(
    "This request may cost up to %(worst)s CNY; the API key's monthly spend cap is %(cap)s CNY "
    "and %(committed)s CNY of it is committed for %(month)s."
)


def spend_month_of(moment: datetime) -> date:
    """The first day of ``moment``'s month in UTC: the month a request's spend counts in."""
    return date(moment.year, moment.month, 1)


def request_worst_case(request: BuyerRequest) -> Decimal:
    """The most ``request`` can be charged: every GPU-hour it asks for at its price cap, one
    settlement line per replica at most.

    An inference request (its ``inference`` set, saved or not) may be served by replicas of any GPU
    model, all of them together within its budget per hour (cap per million tokens × tokens/s ×
    0.0036, ``matching.inference_quote.budget_per_hour``): the most is that budget for every hour
    of its duration, with the rounding slack of one line per replica of its first choice."""
    if request.kind == BuyerRequest.Kind.INFERENCE:
        terms = request.inference
        return worst_case_charge(
            price_per_gpu_hour=budget_per_hour(terms.max_price_per_million_tokens, terms.output_tokens_per_second),
            gpu_hours=Decimal(request.duration_hours),  # the budget is per hour of all its GPUs together
            lines=request.replicas,
        )
    return replicas_worst_case(request, request.replicas)


def month_committed(*, organisation_id: int, month: date, api_key_id: int | None = None) -> Decimal:
    """CNY the organisation's (or one of its keys') requests commit in ``month``."""
    rows = BuyerRequest.objects.filter(buyer_id=organisation_id, spend_month=month)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    # quantized: SQLite's SUM of decimals comes back with float-like places (216.010000000000)
    return (rows.aggregate(total=Sum("spend_committed"))["total"] or ZERO).quantize(FEN)


def request_spend_reserve(
    request: BuyerRequest, *, organisation: Organisation, api_key: ApiKey | None, now: datetime
) -> None:
    """Set ``request``'s month and reservation (unsaved), or raise ``SpendCapExceeded`` naming the
    cap ``monthly_spend_cap`` when its worst case would take the organisation's or the key's month
    past it.

    Precondition: inside the transaction that will insert ``request``, holding ``organisation``'s
    row lock, read under that lock (so its cap is current and no other submission of it counts
    at the same time).
    """
    month, worst = spend_month_of(now), request_worst_case(request)
    caps: list[tuple[str, Decimal | None, int | None]] = [(ORGANISATION_CAP_FULL, organisation.monthly_spend_cap, None)]
    if api_key is not None:
        caps.append((API_KEY_CAP_FULL, api_key.monthly_spend_cap, api_key.pk))
    for message, cap, key_id in caps:
        if cap is None:
            continue
        committed = month_committed(organisation_id=organisation.pk, month=month, api_key_id=key_id)
        if committed + worst > cap:
            raise SpendCapExceeded(
                gettext(message) % {"worst": worst, "cap": cap, "committed": committed, "month": f"{month:%Y-%m}"},
                field="monthly_spend_cap",
            )
    request.spend_month, request.spend_committed, request.api_key = month, worst, api_key


def requests_spend_close(request_ids: Collection[int]) -> None:
    """Shrink the reservations of requests no round will match again to what they were charged
    plus the worst case of their live matches; the rest of each cap is free again.

    Precondition: inside a transaction, the requests locked (or their status changed in it) so
    that no round adds a match meanwhile.
    """
    requests = list(
        BuyerRequest.objects.filter(pk__in=request_ids, spend_month__isnull=False).only("pk", "spend_committed")
    )
    if not requests:
        return
    used = requests_spend_used([request.pk for request in requests])
    committed = {request_id: spend.amount for request_id, spend in used.items()}
    changed = [request for request in requests if request.spend_committed != committed[request.pk]]
    for request in changed:
        request.spend_committed = committed[request.pk]
    BuyerRequest.objects.bulk_update(changed, ["spend_committed"])


def requests_spend_regrow(requests: Collection[BuyerRequest]) -> None:
    """After a fail-over, grow each request's reservation back to what it was charged, plus its
    live matches' worst case, plus its open replicas' worst case at its price cap — by no more than
    its organisation's and its key's caps leave free this month (a cap already reached grows
    nothing; the round then places only what the reservation covers). Several requests of one
    organisation share its room: each growth counts against the next. A constant number of queries.

    Precondition: inside the fail-over's transaction, after the failed matches were charged, holding
    the row locks of the requests' organisations (taken before the requests', as in
    ``services.locking``) and of the requests, whose ``matched_replicas`` are current.
    """
    tracked = [request for request in requests if request.spend_month is not None]
    if not tracked:
        return
    used = requests_spend_used([request.pk for request in tracked])
    organisations = Organisation.objects.in_bulk({request.buyer_id for request in tracked})
    keys = ApiKey.objects.in_bulk({request.api_key_id for request in tracked if request.api_key_id})
    committed = _months_committed(tracked)
    grown = []
    for request in tracked:
        open_replicas = request.replicas - request.matched_replicas
        growth = used[request.pk].amount + replicas_worst_case(request, open_replicas) - request.spend_committed
        scope = (request.buyer_id, request.spend_month)
        caps: list[tuple[Decimal | None, tuple]] = [(organisations[request.buyer_id].monthly_spend_cap, (*scope, None))]
        if request.api_key_id:
            caps.append((keys[request.api_key_id].monthly_spend_cap, (*scope, request.api_key_id)))
        for cap, whose in caps:
            if cap is not None and growth > 0:
                growth = min(growth, max(cap - committed.get(whose, ZERO), ZERO))
        if growth > 0:
            request.spend_committed += growth
            grown.append(request)
            for _, whose in caps:
                committed[whose] = committed.get(whose, ZERO) + growth
    BuyerRequest.objects.bulk_update(grown, ["spend_committed"])


def _months_committed(requests: Collection[BuyerRequest]) -> dict[tuple, Decimal]:
    """What ``month_committed`` gives, for the organisations and months of ``requests``: by
    ``(organisation_id, month, None)`` for an organisation and ``(organisation_id, month, key_id)``
    for each of its keys, in two queries."""
    rows = BuyerRequest.objects.filter(
        buyer_id__in={request.buyer_id for request in requests},
        spend_month__in={request.spend_month for request in requests},
    ).order_by()
    totals: dict[tuple, Decimal] = {}
    for buyer_id, month, total in (
        rows.values("buyer_id", "spend_month")
        .annotate(total=Sum("spend_committed"))
        .values_list("buyer_id", "spend_month", "total")
    ):
        totals[(buyer_id, month, None)] = total.quantize(FEN)
    keyed = rows.filter(api_key__isnull=False).values("buyer_id", "spend_month", "api_key_id")
    for buyer_id, month, key_id, total in keyed.annotate(total=Sum("spend_committed")).values_list(
        "buyer_id", "spend_month", "api_key_id", "total"
    ):
        totals[(buyer_id, month, key_id)] = total.quantize(FEN)
    return totals
