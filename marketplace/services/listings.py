"""Writes to listings: a provider's idle capacity."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from marketplace.bounds import PROFILE_TIMES
from marketplace.errors import CapacityGone, InvalidInput, InvalidTransition, NotAllowed, NotFound
from marketplace.market_time import market_now
from marketplace.models import GpuModel, Listing, LlmModel, Match, MeasuredProfile, Organisation, Region
from marketplace.rule_messages import outside_window
from marketplace.selectors import (
    live_matches_on_failed_nodes,
    live_nodes_by_listing,
    nodes_heard_since,
    ok_times_by_node,
)
from marketplace.services.lifecycle import matches_fail_over
from marketplace.services.triggers import matching_round_enqueue_on_commit
from marketplace.supply import listing_terms_check

#: Fields a provider may change on a listing with ``listing_update``.
EDITABLE_FIELDS = (
    "gpu_count",
    "gpus_per_node",
    "price_per_gpu_hour",
    "available_from",
    "available_until",
    "interruptible_floor_price_per_gpu_hour",
)


@transaction.atomic
def listing_create(
    *,
    provider: Organisation,
    region: Region,
    gpu_model: GpuModel,
    gpu_count: int,
    gpus_per_node: int,
    price_per_gpu_hour: Decimal,
    available_from: datetime,
    available_until: datetime,
    interruptible_floor_price_per_gpu_hour: Decimal | None = None,
) -> Listing:
    """List idle capacity for ``provider``; a matching round follows on commit. A floor offers
    its idle GPUs as interruptible at that price (``matching.interruptible``)."""
    if provider.kind != Organisation.Kind.PROVIDER:
        raise NotAllowed(gettext("Only providers list capacity."))
    listing_terms_check(
        gpu_count=gpu_count,
        gpus_per_node=gpus_per_node,
        price=price_per_gpu_hour,
        start=available_from,
        end=available_until,
        now=market_now(),
        floor=interruptible_floor_price_per_gpu_hour,
    )
    listing = Listing.objects.create(
        provider=provider,
        region=region,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpus_per_node=gpus_per_node,
        price_per_gpu_hour=price_per_gpu_hour,
        available_from=available_from,
        available_until=available_until,
        interruptible_floor_price_per_gpu_hour=interruptible_floor_price_per_gpu_hour,
    )
    matching_round_enqueue_on_commit(gpu_model_code=gpu_model.code)
    return listing


@transaction.atomic
def listing_update(*, listing_id: int, provider: Organisation, changes: dict) -> Listing:
    """Change price, interruptible floor (``None`` withdraws the tier), size or window of an active
    listing of ``provider``. Interruptible matches already running keep their price.

    Takes the listing's row lock so that a matching round cannot allocate between the check and the
    write. The listing cannot shrink below its allocated GPUs, and its node size changes only while
    nothing is allocated (live matches sit on node indices of the old size).
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(gettext("This field cannot be changed."), field=sorted(unknown)[0])
    listing = _locked_own_listing(listing_id=listing_id, provider=provider)
    if listing.status != Listing.Status.ACTIVE:
        raise InvalidTransition(gettext("The listing is %(status)s.") % {"status": listing.status}, field="status")
    merged = {field: changes.get(field, getattr(listing, field)) for field in EDITABLE_FIELDS}
    listing_terms_check(
        gpu_count=merged["gpu_count"],
        gpus_per_node=merged["gpus_per_node"],
        price=merged["price_per_gpu_hour"],
        start=merged["available_from"],
        end=merged["available_until"],
        now=market_now(),
        window_changed=bool({"available_from", "available_until"} & set(changes)),
        floor=merged["interruptible_floor_price_per_gpu_hour"],
    )
    if merged["gpu_count"] < listing.allocated_gpus:
        raise CapacityGone(
            gettext("%(n)s GPUs are allocated; the count cannot go below that.") % {"n": listing.allocated_gpus},
            field="gpu_count",
        )
    if merged["gpus_per_node"] != listing.gpus_per_node and listing.allocated_gpus:
        raise CapacityGone(gettext("Node size cannot change while GPUs are allocated."), field="gpus_per_node")
    if merged["gpu_count"] // merged["gpus_per_node"] <= _highest_live_node(listing):
        raise CapacityGone(gettext("Live matches run on the nodes this would remove."), field="gpu_count")
    for field, value in changes.items():
        setattr(listing, field, value)
    listing.save(update_fields=[*changes, "updated_at"])
    matching_round_enqueue_on_commit(gpu_model_code=listing.gpu_model.code)
    return listing


def listing_withdraw(*, listing_id: int, provider: Organisation, now: datetime | None = None) -> Listing:
    """Take an active listing off the market. Its live matches fail (paying for the time they
    ran) and their requests go back to matching first in line, within the same bounds.

    Two transactions, on purpose: the first marks the listing under its row lock, so a round that
    applies after it sees the listing withdrawn and skips it, and one applying before it has
    committed its matches; the second then fails over every live match on the listing. Failing
    over first would miss a round committing in between; doing both in one transaction would lock
    the listing before the requests, against the lock order. If the process dies between the two,
    the lifecycle tick fails the leftovers over (``live_matches_on_lost_capacity_fail_over``).
    """
    _listing_mark_withdrawn(listing_id=listing_id, provider=provider)
    with transaction.atomic():
        matches_fail_over(
            Q(listing_id=listing_id), now=now or market_now(), reason=f"listing {listing_id} withdrawn by its provider"
        )
    return Listing.objects.get(pk=listing_id)


@transaction.atomic
def _listing_mark_withdrawn(*, listing_id: int, provider: Organisation) -> None:
    listing = _locked_own_listing(listing_id=listing_id, provider=provider)
    if listing.status != Listing.Status.ACTIVE:
        raise InvalidTransition(
            gettext("The listing is already %(status)s.") % {"status": listing.status}, field="status"
        )
    listing.status = Listing.Status.WITHDRAWN
    listing.save(update_fields=["status", "updated_at"])


def listing_nodes_fail(
    *,
    listing_id: int,
    provider: Organisation,
    nodes: list[int],
    now: datetime | None = None,
    cause: str = "failed",
    unless_heard_since: datetime | None = None,
):
    """Mark ``nodes`` of a listing failed: they are offered to nobody, and the live matches with a
    replica on them fail over (see ``matches_fail_over``). Two transactions, for the reasons given
    in ``listing_withdraw``. ``cause`` ends the matches' reason ("node 1 of listing 12 <cause>").

    Each failed-over match's buyer is credited for the real time since the last ``ok`` heartbeat
    of its failed nodes (``money.sla_credit``); a node without heartbeats (a clock-driven listing)
    has no lost time to credit.

    ``unless_heard_since`` (the heartbeat timeout's sweep): nodes with a heartbeat after it are
    left up, checked under the listing's row lock, which a heartbeat also takes: a heartbeat that
    lands between the sweep's read and this write saves its node.
    """
    nodes = _listing_mark_failed_nodes(
        listing_id=listing_id, provider=provider, nodes=nodes, unless_heard_since=unless_heard_since
    )
    if not nodes:
        return Listing.objects.get(pk=listing_id)
    on_nodes = live_matches_on_failed_nodes(listing_id=listing_id)
    reason = f"node {', '.join(map(str, sorted(set(nodes))))} of listing {listing_id} {cause}"
    seconds_lost = _seconds_lost_by_match(listing_id=listing_id, match_ids=on_nodes, nodes=nodes)
    with transaction.atomic():
        matches_fail_over(
            Q(listing_id=listing_id, pk__in=on_nodes),
            now=now or market_now(),
            reason=reason[:300],
            seconds_lost=seconds_lost,
        )
    return Listing.objects.get(pk=listing_id)


def _seconds_lost_by_match(*, listing_id: int, match_ids: list[int], nodes: list[int]) -> dict[int, float]:
    """Real seconds from the last ``ok`` heartbeat of the failed ``nodes`` each match sits on until
    now (the longest, if it sits on several); matches on nodes never heard from are left out."""
    ok_at = ok_times_by_node(listing_id, nodes)
    real_now = timezone.now()
    lost = {}
    for pk, match_nodes in Match.objects.filter(pk__in=match_ids).values_list("pk", "nodes"):
        times = [ok_at[node] for node in set(match_nodes) & set(nodes) if node in ok_at]
        if times:
            lost[pk] = max((real_now - moment).total_seconds() for moment in times)
    return lost


@transaction.atomic
def _listing_mark_failed_nodes(
    *, listing_id: int, provider: Organisation, nodes: list[int], unless_heard_since: datetime | None = None
) -> list[int]:
    """Mark ``nodes`` failed (see ``listing_nodes_fail``); returns the nodes it marked."""
    listing = _locked_own_listing(listing_id=listing_id, provider=provider)
    if not nodes or any(not 0 <= node < listing.node_count for node in nodes):
        raise InvalidInput(
            gettext("Nodes are numbered 0 to %(last)s.") % {"last": listing.node_count - 1}, field="nodes"
        )
    if unless_heard_since is not None:
        heard = set(nodes_heard_since(listing_id, unless_heard_since))
        nodes = [node for node in nodes if node not in heard]
        if not nodes:
            return []
    listing.failed_nodes = sorted(set(listing.failed_nodes) | set(nodes))
    listing.save(update_fields=["failed_nodes", "updated_at"])
    return nodes


def _highest_live_node(listing: Listing) -> int:
    """The highest node index a live match of ``listing`` sits on, or -1."""
    live = live_nodes_by_listing([listing.pk]).get(listing.pk, [])
    return max((node for _, nodes in live for node in nodes), default=-1)


def _locked_own_listing(*, listing_id: int, provider: Organisation) -> Listing:
    """The listing under ``SELECT … FOR UPDATE``; another provider's listing does not exist."""
    try:
        return (
            # of=("self",): lock the listing row only, not the shared GPU model row it joins.
            Listing.objects.select_for_update(of=("self",), no_key=True)
            .select_related("gpu_model")
            .get(pk=listing_id, provider=provider)
        )
    except Listing.DoesNotExist:
        raise NotFound(gettext("No such listing."), field="id") from None


@transaction.atomic
def measured_profile_record(
    *,
    listing_id: int,
    provider: Organisation,
    llm_model: LlmModel,
    precision: str,
    gpus_per_replica: int,
    prompt_tokens: int,
    concurrency: int,
    output_tokens_per_second: Decimal,
    ttft_ms: Decimal,
    measured_at: datetime,
) -> MeasuredProfile:
    """Record the provider's measurement of serving ``llm_model`` on its listing (one transaction;
    the database refuses non-positive figures). A replica lives on one node: ``gpus_per_replica``
    above the listing's node size is a 400 naming it, as is a precision the model is not served at
    or a measurement dated in the future."""
    listing = _locked_own_listing(listing_id=listing_id, provider=provider)
    if precision not in llm_model.precisions:
        served = ", ".join(llm_model.precisions)
        message = gettext("%(model)s is served at %(precisions)s.") % {"model": llm_model.code, "precisions": served}
        raise InvalidInput(message, field="precision")
    if gpus_per_replica > listing.gpus_per_node:
        raise InvalidInput(
            gettext("A replica lives on one node: at most %(n)s GPUs on this listing.") % {"n": listing.gpus_per_node},
            field="gpus_per_replica",
        )
    now = market_now()
    if not PROFILE_TIMES.contains(measured_at, now):
        raise InvalidInput(outside_window(PROFILE_TIMES, now), field="measured_at")
    return MeasuredProfile.objects.create(
        listing=listing,
        llm_model=llm_model,
        precision=precision,
        gpus_per_replica=gpus_per_replica,
        prompt_tokens=prompt_tokens,
        concurrency=concurrency,
        output_tokens_per_second=output_tokens_per_second,
        ttft_ms=ttft_ms,
        measured_at=measured_at,
    )
