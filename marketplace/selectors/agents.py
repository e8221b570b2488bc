"""What a provider's agent reads: the matches it has to provision, and its listings' node heartbeats."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet

from marketplace.models import Listing, Match, NodeHeartbeat, Organisation


def agent_assignments(*, provider: Organisation, listing_id: int | None = None) -> QuerySet[Match]:
    """Live matches (reserved or running) on ``provider``'s listings, or on ``listing_id`` only,
    soonest start first, with the request loaded (its workload); one query per page."""
    queryset = Match.objects.filter(listing__provider=provider, status__in=Match.LIVE_STATUSES).select_related(
        "request", "listing__region"
    )
    if listing_id is not None:
        queryset = queryset.filter(listing_id=listing_id)
    return queryset.order_by("starts_at", "pk")


def agent_listings(*, provider: Organisation) -> QuerySet[Listing]:
    """``provider``'s active listings with their region and GPU model; one query per page."""
    return Listing.objects.filter(provider=provider, status=Listing.Status.ACTIVE).select_related("region", "gpu_model")


def provision_deadline(match: Match) -> datetime:
    """Market time by which an agent-driven match must be ready, or it fails over."""
    return match.starts_at + timedelta(seconds=settings.PROVISION_DEADLINE_SECONDS)


def ok_times_by_node(listing_id: int, nodes: list[int]) -> dict[int, datetime]:
    """When each of ``nodes`` of the listing last sent an ``ok`` heartbeat (nodes never ok are absent)."""
    rows = NodeHeartbeat.objects.filter(listing_id=listing_id, node__in=nodes, ok_at__isnull=False)
    return {node: ok_at for node, ok_at in rows.values_list("node", "ok_at") if ok_at is not None}


def silence_since(real_now: datetime) -> datetime:
    """A node last heard from before this (real time) is silent: ``NODE_HEARTBEAT_TIMEOUT_SECONDS`` ago."""
    return real_now - timedelta(seconds=settings.NODE_HEARTBEAT_TIMEOUT_SECONDS)


def nodes_heard_since(listing_id: int, since: datetime) -> list[int]:
    """Nodes of the listing with a heartbeat (of any health) after ``since``."""
    return list(NodeHeartbeat.objects.filter(listing_id=listing_id, seen_at__gt=since).values_list("node", flat=True))


def silent_nodes_by_listing(*, real_now: datetime) -> dict[int, list[int]]:
    """Nodes (not yet failed) of active agent-driven listings with no heartbeat for
    ``NODE_HEARTBEAT_TIMEOUT_SECONDS`` of real time, by listing id; a node never heard from counts
    from the listing's first heartbeat. Two queries."""
    since = silence_since(real_now)
    listings = list(
        Listing.objects.filter(status=Listing.Status.ACTIVE, agent_since__lte=since).values_list(
            "pk", "gpu_count", "gpus_per_node", "failed_nodes"
        )
    )
    seen = NodeHeartbeat.objects.filter(listing_id__in=[row[0] for row in listings], seen_at__gt=since)
    recent = set(seen.values_list("listing_id", "node"))
    silent = {}
    for pk, gpu_count, gpus_per_node, failed in listings:
        nodes = [n for n in range(gpu_count // gpus_per_node) if n not in failed and (pk, n) not in recent]
        if nodes:
            silent[pk] = nodes
    return silent
