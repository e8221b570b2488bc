"""Time passing for matches, requests and listings: start, run, end, settle, fail over.

A match holds its GPUs from ``starts_at`` for the request's duration: reserved → running →
completed, or cancelled (by the buyer), failed (capacity lost) or, for an interruptible match,
preempted (after its notice: ``services.plans`` gives it, this module ends it). On a clock-driven listing the
tick starts it at ``starts_at``; on an agent-driven one its provider's agent does, by saying ready
(``services.agents``), and it is metered from then. Ending a match — whichever way —
goes through :func:`matches_end`, which meters the GPU-hours actually held, writes the one
settlement line the match will ever have, draws its subsidy from the voucher reservation and
releases the rest, and gives the GPUs back to the listing.

Every step locks rows in the one order of ``services.locking``: requests, matches, listings,
programmes, vouchers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils.translation import gettext

from marketplace.errors import InvalidTransition, NotFound
from marketplace.models import BuyerRequest, Listing, Match, Organisation, RequestInference, Settlement
from marketplace.money import buyer_charge, gpu_hours_held, gpu_hours_of, sla_credit, to_fen
from marketplace.selectors.buyer_pages import metered_from
from marketplace.selectors.engine import live_matches_on_failed_nodes
from marketplace.selectors.vouchers import net_reserved_by_match
from marketplace.services.events import MATCH_COMPLETED, MATCH_FAILED, matches_publish, matches_started_publish
from marketplace.services.locking import rows_locked
from marketplace.services.plans import inference_placed_state
from marketplace.services.spend import requests_spend_close, requests_spend_regrow, spend_month_of
from marketplace.services.subsidies import SubsidyBook, Take, write_releases
from marketplace.services.triggers import matching_round_enqueue_on_commit

ZERO = Decimal("0")
#: A failed-over request whose start_by has passed gets this long to be placed again.
FAILOVER_GRACE = timedelta(hours=1)
#: The webhook event of each way a match can end; a cancel is the buyer's own doing and has none.
ENDED_EVENTS: dict[str, str] = {Match.Status.COMPLETED: MATCH_COMPLETED, Match.Status.FAILED: MATCH_FAILED}


@dataclass(frozen=True)
class TickCounts:
    started: int
    completed: int
    expired_requests: int
    closed_listings: int


def lifecycle_tick(*, now: datetime) -> TickCounts:
    """Expire requests that can no longer start, fail over matches left on lost capacity, start
    due matches, end pre-empted ones whose notice ran out, complete finished ones (settling them),
    close listings past their window.
    Requests no round will match again (expired, or past ``start_by`` partly served) release the
    unused part of their spend reservation.

    Each step is one transaction, and the steps go in the lock order (requests, then matches, then
    listings), so the tick never holds a later kind of row while it waits for an earlier one.
    Precondition: called outside a transaction (else the steps' locks would pile up in one).
    Idempotent: a second tick at the same ``now`` changes nothing.
    """
    with transaction.atomic():
        expired = _requests_past_start_by_close(now=now)
    with transaction.atomic():
        live_matches_on_lost_capacity_fail_over(now=now)
    with transaction.atomic():
        # Only clock-driven listings: on an agent-driven one the agent's ready starts a match
        # (services.agents, which announces it the same way).
        due_to_start = Match.objects.select_for_update(no_key=True).filter(
            status=Match.Status.RESERVED, starts_at__lte=now, ends_at__gt=now, listing__agent_since__isnull=True
        )
        starting = list(due_to_start.values_list("pk", flat=True))
        started = Match.objects.filter(pk__in=starting).update(status=Match.Status.RUNNING, ready_at=F("starts_at"))
        matches_started_publish(starting)
    with transaction.atomic():
        matches_preempted_end(now=now)
    with transaction.atomic():
        due = live_matches_locked(Q(ends_at__lte=now, preempt_at__isnull=True))
        matches_end(due, status=Match.Status.COMPLETED, at=now, reason="ran its full duration")
    with transaction.atomic():
        closed = Listing.objects.filter(status=Listing.Status.ACTIVE, available_until__lte=now).update(
            status=Listing.Status.CLOSED
        )
    return TickCounts(started=started, completed=len(due), expired_requests=expired, closed_listings=closed)


def _requests_past_start_by_close(*, now: datetime) -> int:
    """Expire open requests past ``start_by`` and shrink the spend reservations of requests no
    round will match again: those expiring now, and this month's fully matched ones and partly
    matched ones past ``start_by`` (earlier months' caps no longer refuse anything, so their
    requests are left as they are). Returns how many expired."""
    past = Q(start_by__lt=now)
    expiring = BuyerRequest.objects.filter(past, status=BuyerRequest.Status.OPEN)
    settled = BuyerRequest.objects.filter(
        Q(status=BuyerRequest.Status.MATCHED) | (past & Q(status=BuyerRequest.Status.PARTIALLY_MATCHED)),
        spend_month=spend_month_of(now),
    )
    locked = rows_locked(
        BuyerRequest.objects.only("pk"), [*expiring.values_list("pk", flat=True), *settled.values_list("pk", flat=True)]
    )
    expired = expiring.filter(pk__in=locked).update(status=BuyerRequest.Status.EXPIRED)
    requests_spend_close(locked)
    return expired


def matches_end(
    matches: list[Match], *, status: str, at: datetime, reason: str, seconds_lost: Mapping[int, float] | None = None
) -> list[Settlement]:
    """End live ``matches`` at ``at`` (capped to each one's window) and settle each exactly once.

    ``seconds_lost`` (by match id): real seconds its capacity was gone before this failover, which
    the SLA credit pays back (``money.sla_credit``); none for a match not in it.
    Preconditions: inside a transaction; the matches are locked (``select_for_update``) with
    ``request`` and ``listing__gpu_model`` loaded, and (when the caller changes requests) the
    requests were locked before them.
    """
    matches = [match for match in matches if match.status in Match.LIVE_STATUSES]
    if not matches:
        return []
    rows_locked(Listing, {match.listing_id for match in matches})
    held = net_reserved_by_match([match.pk for match in matches if match.voucher_id])
    book = SubsidyBook.locked({match.voucher_id for match in matches if match.voucher_id and match.pk in held}, now=at)
    settlements, releases = [], []
    for match in matches:
        ended_at = min(max(at, match.starts_at), match.ends_at)
        match.ended_at = ended_at
        match.status, match.status_reason = status, reason[:300]
        settlement = _settlement_of(match, ended_at=ended_at, seconds_lost=(seconds_lost or {}).get(match.pk, 0.0))
        settlements.append(settlement)
        reserved, hours = held.get(match.pk, (ZERO, ZERO))
        if match.voucher_id and reserved > settlement.subsidy:  # only matches with a voucher are held
            unused = Take.of(
                book.vouchers[match.voucher_id],
                amount=reserved - settlement.subsidy,
                gpu_hours=max(ZERO, hours - settlement.gpu_hours),
            )
            releases.append((match, unused))
    Match.objects.bulk_update(matches, ["status", "status_reason", "ended_at"])
    if status in ENDED_EVENTS:
        matches_publish(ENDED_EVENTS[status], matches)
    Settlement.objects.bulk_create(settlements)
    write_releases(releases)
    _listings_release(matches)
    for code in sorted({match.listing.gpu_model.code for match in matches}):
        matching_round_enqueue_on_commit(gpu_model_code=code)
    return settlements


def _settlement_of(match: Match, *, ended_at: datetime, seconds_lost: float = 0.0) -> Settlement:
    """The match's one statement line, by the rules of ``marketplace.money``, for it ending at
    ``ended_at`` after its capacity was gone ``seconds_lost`` (real seconds; see ``matches_end``)."""
    metered_from = _metered_from(match)
    hours = ZERO if metered_from is None else gpu_hours_held(gpus=match.gpus, start=metered_from, end=ended_at)
    gross, subsidy, _ = buyer_charge(
        price_per_gpu_hour=match.price_per_gpu_hour, subsidy_per_gpu_hour=match.subsidy_per_gpu_hour, gpu_hours=hours
    )
    fee = to_fen(gross * Decimal(str(settings.PLATFORM_FEE_PERCENT)) / 100)
    credit = sla_credit(
        price_per_gpu_hour=match.price_per_gpu_hour,
        gpu_hours_lost=gpu_hours_of(gpus=match.gpus, seconds=seconds_lost),
        multiple=Decimal(str(settings.SLA_CREDIT_MULTIPLE)),
        buyer_charge=gross - subsidy,
        provider_share=gross - fee,
    )
    return Settlement(
        match=match,
        buyer_id=match.request.buyer_id,
        provider_id=match.listing.provider_id,
        program_id=match.voucher.program_id if match.voucher is not None else None,
        settled_at=ended_at,
        gpu_hours=hours,
        price_per_gpu_hour=match.price_per_gpu_hour,
        gross=gross,
        subsidy=subsidy,
        buyer_pays=gross - subsidy - credit,
        platform_fee=fee,
        provider_earns=gross - fee - credit,
        sla_credit=credit,
    )


def _metered_from(match: Match) -> datetime | None:
    """Where the match's metering starts (``selectors.buyer_pages.metered_from``: the cancel
    confirmation tells the buyer by the same rule what a cancel will charge)."""
    return metered_from(match)


def _listings_release(matches: list[Match]) -> None:
    freed: dict[int, int] = {}
    for match in matches:
        freed[match.listing_id] = freed.get(match.listing_id, 0) + match.gpus
    for listing_id, gpus in sorted(freed.items()):
        Listing.objects.filter(pk=listing_id).update(allocated_gpus=F("allocated_gpus") - gpus)


# --- the buyer stops ----------------------------------------------------------------------------


@transaction.atomic
def match_cancel(*, match_id: int, buyer: Organisation, now: datetime) -> Match:
    """The buyer stops one match: it pays for the time it ran (nothing if it had not started)."""
    match = (
        Match.objects.select_for_update(of=("self",), no_key=True)
        .select_related("request", "listing__gpu_model", "voucher")
        .filter(pk=match_id, request__buyer=buyer)
        .first()
    )
    if match is None:
        raise NotFound(gettext("No such match."), field="id")
    if match.status not in Match.LIVE_STATUSES:
        raise InvalidTransition(gettext("The match is already %(status)s.") % {"status": match.status}, field="status")
    matches_end([match], status=Match.Status.CANCELLED, at=now, reason="cancelled by the buyer")
    return match


def live_matches_locked(query: Q) -> list[Match]:
    """Live matches matching ``query``, locked, with what ``matches_end`` needs loaded."""
    return list(
        Match.objects.select_for_update(of=("self",), no_key=True)
        .filter(query, status__in=Match.LIVE_STATUSES)
        .select_related("request", "listing__gpu_model", "voucher")
        .order_by("pk")
    )


# --- capacity lost: fail over -------------------------------------------------------------------


def live_matches_on_lost_capacity_fail_over(*, now: datetime) -> list[Match]:
    """Fail over live matches left on a listing that is no longer active or on a failed node —
    what a withdrawal or node failure leaves if its process died between its two transactions.
    A match already due to end completes instead (``lifecycle_tick``): it ran its full duration."""
    on_failed = live_matches_on_failed_nodes()
    lost = Q(pk__in=on_failed) | Q(listing__status__in=[Listing.Status.WITHDRAWN, Listing.Status.CLOSED])
    reason = "capacity lost: listing withdrawn or node failed"
    return matches_fail_over(lost & Q(ends_at__gt=now), now=now, reason=reason)


def matches_fail_over(
    query: Q, *, now: datetime, reason: str, seconds_lost: Mapping[int, float] | None = None
) -> list[Match]:
    """Fail the live matches in ``query`` and send their requests back to matching, first in line.
    ``seconds_lost`` (by match id) earns their buyers SLA credits (see ``matches_end``).

    Each request gives back the failed replicas, gains one priority level (so the next round serves
    it before new demand) and, if its ``start_by`` has passed, gets ``FAILOVER_GRACE`` to be placed
    again within the same latency, price and size bounds. Precondition: inside a transaction.
    """
    return _matches_end_requeued(
        query, status=Match.Status.FAILED, now=now, reason=reason, seconds_lost=seconds_lost, first_in_line=True
    )


def matches_preempted_end(*, now: datetime) -> list[Match]:
    """End as ``preempted`` the interruptible matches whose pre-emption notice has run out
    (``preempt_at`` ≤ ``now``; the round that pre-empted them set their ``ends_at`` to it, so each
    is billed for the time it ran up to its notice's end, however late the tick), and send their
    requests back to matching at their own priority: the replicas are placed again by a later
    round, on whatever the tier has free then. Precondition: inside a transaction.
    """
    reason = "pre-empted by on-demand demand after its notice"
    return _matches_end_requeued(Q(preempt_at__lte=now), status=Match.Status.PREEMPTED, now=now, reason=reason)


def _matches_end_requeued(
    query: Q,
    *,
    status: str,
    now: datetime,
    reason: str,
    seconds_lost: Mapping[int, float] | None = None,
    first_in_line: bool = False,
) -> list[Match]:
    """End the live matches in ``query`` with ``status`` and give their replicas back to their
    requests (an inference request gets their tokens/s back: its placed tokens/s shrink and it
    reopens, to be placed again on whatever GPU models serve it), which get ``FAILOVER_GRACE`` past
    a ``start_by`` that has passed to be placed again within the same bounds; ``first_in_line``:
    one priority level up as well. Locks organisations (spend caps), requests, then matches and
    listings (``matches_end``): the lock order."""
    request_ids = set(Match.objects.filter(query, status__in=Match.LIVE_STATUSES).values_list("request_id", flat=True))
    # The buyers whose spend is capped first, in the lock order: their reservations grow below.
    rows_locked(
        Organisation,
        BuyerRequest.objects.filter(pk__in=request_ids, spend_month__isnull=False).values_list("buyer_id", flat=True),
    )
    # An inference request's terms and tokens/s placed come with it, written under its lock (services.plans).
    requests = rows_locked(BuyerRequest.objects.select_related("inference"), request_ids)
    ended = live_matches_locked(query)
    matches_end(ended, status=status, at=now, reason=reason, seconds_lost=seconds_lost)
    for match in ended:
        request = requests[match.request_id]
        if first_in_line:
            request.priority = min(request.priority + 1, 100)
        request.start_by = max(request.start_by, now + FAILOVER_GRACE)
        if request.kind == BuyerRequest.Kind.INFERENCE:
            # Its tokens/s go back to matching, to be placed again on any GPU model that serves them.
            inference = request.inference
            inference.tokens_per_second_placed = max(
                ZERO, inference.tokens_per_second_placed - (match.tokens_per_second or ZERO)
            )
            request.matched_replicas, placed_status = inference_placed_state(request)
            if request.status in (BuyerRequest.Status.MATCHED, BuyerRequest.Status.PARTIALLY_MATCHED):
                request.status = placed_status
            continue
        request.matched_replicas -= match.replicas
        if request.status in (BuyerRequest.Status.MATCHED, BuyerRequest.Status.PARTIALLY_MATCHED):
            request.status = (
                BuyerRequest.Status.PARTIALLY_MATCHED if request.matched_replicas else BuyerRequest.Status.OPEN
            )
    BuyerRequest.objects.bulk_update(requests.values(), ["matched_replicas", "priority", "start_by", "status"])
    RequestInference.objects.bulk_update(
        [r.inference for r in requests.values() if r.kind == BuyerRequest.Kind.INFERENCE],
        ["tokens_per_second_placed"],
    )
    requests_spend_regrow(requests.values())
    return ended
