"""Applying the engine's plans: a round's only write to matches, listings, requests and vouchers.

A plan is computed from a snapshot without locks; it is applied in one transaction that locks the
requests and listings it touches (in the lock order of ``services.locking``, so two appliers never
deadlock) and re-checks
every assignment against the locked rows. An assignment whose GPUs or demand went elsewhere since
the snapshot is skipped, never forced: no GPU is ever allocated twice.

An inference request's assignments (``Plan.inference_assignments``) become matches the same way,
with what they serve (precision, tokens/s, TTFT, price per million tokens); its
``RequestInference.tokens_per_second_placed`` grows by their tokens/s. That row is written only
under its request's row lock (here and in ``services.lifecycle``), so it needs no lock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import F

from marketplace.models import BuyerRequest, Listing, Match, RequestInference
from marketplace.money import buyer_rate
from marketplace.selectors import live_nodes_by_listing, node_free_of
from marketplace.services.events import MATCH_PREEMPTED, matches_publish, requests_matched_publish
from marketplace.services.locking import rows_locked
from marketplace.services.subsidies import ZERO, SubsidyBook, Take
from matching.inference_quote import per_million_tokens
from matching.problem import Assignment, Plan, Preemption
from matching.quarantine import LeftOut, SearchExhausted, rows_to_leave_out

SKIPPED_REASON = "capacity or demand changed while the round was solving; next round retries"


@dataclass
class ApplyResult:
    """The matches a plan became, and its assignments that had gone stale (with why)."""

    matches: list[Match] = field(default_factory=list)
    stale: list[tuple[Assignment, str]] = field(default_factory=list)

    @property
    def served_replicas(self) -> int:
        return sum(match.replicas for match in self.matches)


@transaction.atomic
def match_plan_apply(*, plan: Plan, run_id: int | None, now: datetime) -> ApplyResult:
    """Turn ``plan``'s assignments, GPU-form and inference, into matches, re-checked under row locks.

    The plan's pre-emptions are given notice first (:func:`matches_preempt`).
    Postconditions: every listing's ``allocated_gpus`` grew by exactly what the created matches
    hold; every GPU-form request's ``matched_replicas`` by their replicas; every inference request's
    ``tokens_per_second_placed`` by their tokens/s (its ``matched_replicas`` and status follow,
    :func:`inference_placed_state`); no node holds more than its size. Writes are batched (one
    insert, one listing update, one request update per distinct value), so the cost grows with the
    plan's size in rows, not in round trips.
    """
    every = (*plan.assignments, *plan.inference_assignments)
    # In the lock order (services.locking): requests, matches (pre-empted), listings, then the
    # SubsidyBook's programmes and vouchers. An inference request's terms come with its row (not locked
    # apart: only writers holding the request's lock change them).
    requests = rows_locked(BuyerRequest.objects.select_related("inference"), (a.request_id for a in every))
    matches_preempt(preemptions=plan.preempted, now=now)
    listings = rows_locked(Listing, (a.listing_id for a in every))
    book = SubsidyBook.locked({r.voucher_id for r in requests.values() if r.voucher_id}, now)
    live = live_nodes_by_listing(list(listings))
    node_free = {pk: list(node_free_of(listing, live.get(pk, []))) for pk, listing in listings.items()}
    result, takes = ApplyResult(), []
    for assignment in every:
        listing, request = listings[assignment.listing_id], requests[assignment.request_id]
        inference = assignment.tokens_per_second_per_replica > 0
        stale = (_stale_inference if inference else _stale)(assignment, listing, request, node_free[listing.pk], now)
        if stale:
            result.stale.append((assignment, stale))
            continue
        match, take = _match_row(assignment, request, run_id, book)
        result.matches.append(match)
        takes.append(take)
        if inference:
            request.inference.tokens_per_second_placed += match.tokens_per_second or 0
        else:
            request.matched_replicas += assignment.replicas
        for node in assignment.nodes:
            node_free[listing.pk][node] -= assignment.gpus_per_replica
    result.matches = Match.objects.bulk_create(result.matches, batch_size=1000)
    book.write([(match, take) for match, take in zip(result.matches, takes, strict=True) if take])
    _listings_allocate(result.matches)
    _requests_refresh_status(requests.values(), result.matches, now)
    requests_matched_publish(requests, result.matches)
    return result


def inference_placed_state(request: BuyerRequest) -> tuple[int, str]:
    """An inference request's ``matched_replicas`` and status for its tokens/s placed.

    ``matched_replicas`` counts its placed share of the target in replicas of its first-choice
    alternative (the row's ``replicas``): ⌊replicas × min(placed, asked) ÷ asked⌋, so it never
    exceeds ``replicas`` (the row's constraint) and equals it exactly when the target is placed;
    its matches' own replicas, of whatever GPU model and size, are not counted. Status: matched when
    placed ≥ asked, partially matched when some is placed, open when none. Needs ``inference``
    loaded; a closed request (cancelled, expired) keeps its status.
    """
    inference = request.inference
    asked, placed = inference.output_tokens_per_second, inference.tokens_per_second_placed
    matched = min(request.replicas, int(request.replicas * min(placed, asked) / asked))
    if request.status not in BuyerRequest.OPEN_STATUSES and request.status != BuyerRequest.Status.MATCHED:
        return matched, request.status
    if placed >= asked:
        return matched, BuyerRequest.Status.MATCHED
    return matched, BuyerRequest.Status.PARTIALLY_MATCHED if placed > 0 else BuyerRequest.Status.OPEN


def matches_preempt(*, preemptions: Sequence[Preemption], now: datetime) -> list[Match]:
    """Give notice to the interruptible matches a round pre-empts: each ends ``PREEMPT_NOTICE_SECONDS``
    of market time from ``now`` (``preempt_at``, and its ``ends_at`` moves there), when the lifecycle
    tick ends it as ``preempted`` and its GPUs go to the on-demand demand that needed them.

    Re-checked under the matches' row locks: only a running interruptible match not already under
    notice is pre-empted (never an on-demand one, whatever the plan says); one that a cancel, a
    failure or its own end stopped meanwhile, or that ends by itself before the notice would, is
    left alone. Publishes ``match.preempted``. Precondition: inside a transaction, after the
    requests' locks and before the listings' (the lock order).
    """
    if not preemptions:
        return []
    at = now + timedelta(seconds=settings.PREEMPT_NOTICE_SECONDS)
    matches = list(
        Match.objects.select_for_update(of=("self",), no_key=True)
        .select_related("request", "listing")
        .filter(
            pk__in=sorted({p.match_id for p in preemptions}),
            status=Match.Status.RUNNING,
            request__interruptible=True,
            preempt_at__isnull=True,
            ends_at__gt=at,
        )
        .order_by("pk")
    )
    for match in matches:
        match.preempt_at = match.ends_at = at
    Match.objects.bulk_update(matches, ["preempt_at", "ends_at"])
    matches_publish(MATCH_PREEMPTED, matches)
    return matches


def match_plan_apply_quarantined(*, plan: Plan, run_id: int | None, now: datetime) -> tuple[ApplyResult, list[LeftOut]]:
    """:func:`match_plan_apply`, and if the database refuses the plan (a constraint, a value it
    cannot store), the plan without the requests whose matches it refuses, and those requests with
    the error (``matching.quarantine``). Each attempt of the search runs in a transaction that is
    rolled back; only the final apply commits. Errors that are not about rows (a lost connection, a
    deadlock) are raised as they are: the round is retried.
    """
    try:
        return match_plan_apply(plan=plan, run_id=run_id, now=now), []
    except (IntegrityError, DataError) as first:
        requests = sorted({a.request_id for a in (*plan.assignments, *plan.inference_assignments)})

        def fails(indices) -> BaseException | None:
            chosen = {requests[i] for i in indices}
            try:
                with transaction.atomic():
                    match_plan_apply(plan=_only(plan, chosen), run_id=run_id, now=now)
                    transaction.set_rollback(True)
            except (IntegrityError, DataError) as exc:
                return exc
            return None

        try:
            refused = rows_to_leave_out(len(requests), fails)
        except SearchExhausted:
            raise first from None
    kept = set(requests) - {requests[i] for i in refused}
    left_out = [
        LeftOut("request", requests[i], f"the database refused its match: {error}"[:300])
        for i, error in sorted(refused.items())
    ]
    return match_plan_apply(plan=_only(plan, kept), run_id=run_id, now=now), left_out


def _only(plan: Plan, request_ids: set[int]) -> Plan:
    """``plan`` with only the assignments, of either form, of ``request_ids``."""
    return replace(
        plan,
        assignments=tuple(a for a in plan.assignments if a.request_id in request_ids),
        inference_assignments=tuple(a for a in plan.inference_assignments if a.request_id in request_ids),
    )


def _stale(
    assignment: Assignment, listing: Listing, request: BuyerRequest, node_free: list[int], now: datetime
) -> str | None:
    """Why ``assignment`` no longer fits the locked rows, or None when it still does."""
    if stale := _rows_stale(listing, request, now):
        return stale
    if request.kind != BuyerRequest.Kind.GPUS:
        return f"request {request.pk} is an inference request"
    if request.replicas - request.matched_replicas < assignment.replicas:
        return f"request {request.pk} has fewer replicas left to place"
    if assignment.gpus_per_replica != request.gpus_per_replica or request.gpus_per_replica > listing.gpus_per_node:
        return "replica size does not fit the listing's nodes"
    return _nodes_stale(assignment, node_free)


def _rows_stale(listing: Listing, request: BuyerRequest, now: datetime) -> str | None:
    """Why the locked rows take no assignment at all, whatever its form: the listing is no longer
    active and unexpired, or the request no longer open."""
    if listing.status != Listing.Status.ACTIVE or listing.available_until <= now:
        return f"listing {listing.pk} is {listing.status}"
    if request.status not in BuyerRequest.OPEN_STATUSES:
        return f"request {request.pk} is {request.status}"
    return None


def _nodes_stale(assignment: Assignment, node_free: list[int]) -> str | None:
    needed: dict[int, int] = {}
    for node in assignment.nodes:
        needed[node] = needed.get(node, 0) + assignment.gpus_per_replica
    if any(node >= len(node_free) or node_free[node] < gpus for node, gpus in needed.items()):
        return SKIPPED_REASON
    return None


def _stale_inference(
    assignment: Assignment, listing: Listing, request: BuyerRequest, node_free: list[int], now: datetime
) -> str | None:
    """Why an inference assignment no longer fits the locked rows, or None when it still does: the
    listing is active, the request open and of the inference kind, and each of its replicas starts
    below the target (placed so far + all its replicas but the last < asked: the engine's rule, so
    the last replica may overshoot by less than one replica, never more)."""
    if stale := _rows_stale(listing, request, now):
        return stale
    if request.kind != BuyerRequest.Kind.INFERENCE:
        return f"request {request.pk} is not an inference request"
    inference = request.inference
    per_replica = Decimal(str(assignment.tokens_per_second_per_replica))
    if (
        inference.tokens_per_second_placed + (assignment.replicas - 1) * per_replica
        >= inference.output_tokens_per_second
    ):
        return f"request {request.pk} has fewer tokens/s left to place"
    if assignment.gpus_per_replica > listing.gpus_per_node:
        return "replica size does not fit the listing's nodes"
    return _nodes_stale(assignment, node_free)


def _match_row(
    assignment: Assignment, request: BuyerRequest, run_id: int | None, book: SubsidyBook
) -> tuple[Match, Take | None]:
    """The match to insert and its subsidy reservation: the planned subsidy, cut to what the
    voucher's balances still cover (the cost per GPU-hour rises by what was cut)."""
    subsidy, take = ZERO, None
    if request.voucher_id:
        subsidy, take = book.take(
            voucher_id=request.voucher_id,
            request_id=request.pk,
            price=assignment.price_per_gpu_hour,
            planned_per_gpu_hour=assignment.subsidy_per_gpu_hour,
            gpu_hours=assignment.gpus * request.duration_hours,
        )
    match = Match(
        request=request,
        listing_id=assignment.listing_id,
        run_id=run_id,
        replicas=assignment.replicas,
        gpus_per_replica=assignment.gpus_per_replica,
        gpus=assignment.gpus,
        nodes=list(assignment.nodes),
        price_per_gpu_hour=assignment.price_per_gpu_hour,
        subsidy_per_gpu_hour=subsidy,
        voucher_id=request.voucher_id if take else None,
        energy_cost_per_gpu_hour=assignment.energy_cost_per_gpu_hour,
        cost_per_gpu_hour=assignment.cost_per_gpu_hour + assignment.subsidy_per_gpu_hour - subsidy,
        rtt_ms=round(assignment.rtt_ms, 1),
        latency_class=assignment.latency_class.value,
        explanation=assignment.explanation,
        starts_at=assignment.starts_at,
        ends_at=assignment.starts_at + timedelta(hours=request.duration_hours),
    )
    if assignment.tokens_per_second_per_replica > 0:
        _inference_fields(match, assignment)
    return match, take


#: Tokens/s and TTFT are stored to a tenth.
TENTH = Decimal("0.1")


def _inference_fields(match: Match, assignment: Assignment) -> None:
    """What an inference match serves: precision, tokens/s of all its replicas, TTFT, and what the
    buyer pays per million output tokens (its price after subsidy × GPUs ÷ the million tokens its
    tokens/s make in an hour, to the money quantum)."""
    tokens = Decimal(str(assignment.tokens_per_second)).quantize(TENTH)
    match.precision = assignment.precision
    match.tokens_per_second = tokens
    match.ttft_ms = None if assignment.ttft_ms is None else Decimal(str(assignment.ttft_ms)).quantize(TENTH)
    buyer_pays = (
        buyer_rate(price_per_gpu_hour=match.price_per_gpu_hour, subsidy_per_gpu_hour=match.subsidy_per_gpu_hour)
        * match.gpus
    )
    match.price_per_million_tokens = per_million_tokens(buyer_pays, float(tokens))


def _listings_allocate(matches: list[Match]) -> None:
    """Add each listing's new GPUs: one UPDATE per distinct amount added (a handful per round).

    ``F()`` so the database does the arithmetic on the locked rows; the check constraint
    ``allocated_gpus <= gpu_count`` is the last guard against a double allocation.
    """
    added: dict[int, int] = {}
    for match in matches:
        added[match.listing_id] = added.get(match.listing_id, 0) + match.gpus
    for gpus, listing_ids in _grouped(added).items():
        Listing.objects.filter(pk__in=listing_ids).update(allocated_gpus=F("allocated_gpus") + gpus)


def _requests_refresh_status(requests: Iterable[BuyerRequest], matches: list[Match], now: datetime) -> None:
    """Write matched replicas and status (one UPDATE per distinct pair), and inference requests'
    tokens/s placed (one UPDATE)."""
    touched = {match.request_id for match in matches}
    new_values: dict[int, tuple[int, str]] = {}
    placed: list[RequestInference] = []
    for request in requests:
        if request.pk not in touched:
            continue
        if request.kind == BuyerRequest.Kind.INFERENCE:
            new_values[request.pk] = inference_placed_state(request)
            placed.append(request.inference)
        else:
            full = request.matched_replicas >= request.replicas
            status = BuyerRequest.Status.MATCHED if full else BuyerRequest.Status.PARTIALLY_MATCHED
            new_values[request.pk] = (request.matched_replicas, status)
    for (matched, status), request_ids in _grouped(new_values).items():
        BuyerRequest.objects.filter(pk__in=request_ids).update(matched_replicas=matched, status=status, updated_at=now)
    # Tokens/s placed differ from request to request: one UPDATE for them all.
    RequestInference.objects.bulk_update(placed, ["tokens_per_second_placed"], batch_size=1000)


def _grouped(values_by_id: dict) -> dict:
    """``{id: value}`` → ``{value: [ids]}``, ids sorted so row locks are taken in one order."""
    groups: dict = {}
    for pk in sorted(values_by_id):
        groups.setdefault(values_by_id[pk], []).append(pk)
    return groups
