"""A provider's agent closes the loop: it says when a match is ready (and where), and reports each
node's health; silent or failed nodes and late provisioning fail matches over.

Two clocks, on purpose. Heartbeats are real (wall-clock) time: they measure a live process, and
the market clock can be advanced or frozen by simulations and demos. A match's ``ready_at`` and
its provisioning deadline are market time, like its planned start and its metering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from marketplace.errors import InvalidInput, InvalidTransition, NotFound
from marketplace.models import Listing, Match, NodeHeartbeat, Organisation
from marketplace.selectors import silence_since, silent_nodes_by_listing
from marketplace.services.events import matches_started_publish
from marketplace.services.listings import listing_nodes_fail
from marketplace.services.triggers import matching_round_enqueue_on_commit


@transaction.atomic
def match_ready(*, match_id: int, provider: Organisation, endpoint: str, note: str = "", now: datetime) -> Match:
    """The provider's agent says the match is provisioned at ``endpoint``: it runs from ``now``
    (market time), and is metered from then (never before its planned start).

    Only a reserved match of one of ``provider``'s listings, before its end; another provider's
    match does not exist for the caller. The endpoint is checked by the caller (an https URL).
    """
    match = (
        Match.objects.select_for_update(of=("self",), no_key=True)
        .filter(pk=match_id, listing__provider=provider)
        .first()
    )
    if match is None:
        raise NotFound(gettext("No such match."), field="id")
    if match.status != Match.Status.RESERVED:
        raise InvalidTransition(
            gettext("The match is %(status)s, not reserved.") % {"status": match.status}, field="status"
        )
    if now >= match.ends_at:
        raise InvalidTransition(gettext("The match's window has ended."), field="status")
    match.status, match.ready_at, match.endpoint, match.ready_note = Match.Status.RUNNING, now, endpoint, note
    match.save(update_fields=["status", "ready_at", "endpoint", "ready_note"])
    matches_started_publish([match.pk])
    return match


@dataclass(frozen=True)
class HeartbeatResult:
    listing: Listing
    #: Nodes this heartbeat reported failed that were not failed before (their matches failed over).
    newly_failed: list[int]
    #: Failed nodes this heartbeat reported ok: offered again from the next round.
    recovered: list[int]


def agent_heartbeat_record(
    *, listing_id: int, provider: Organisation, nodes: dict[int, str], real_now: datetime | None = None
) -> HeartbeatResult:
    """Record one heartbeat of ``provider``'s agent for a listing: each node ``ok`` or ``failed``.

    The first heartbeat makes the listing agent-driven. A node reported failed is failed at once
    (``listing_nodes_fail``: its matches fail over, their buyers credited for the time since the
    node's last ``ok``). A node failed for the agent's silence or by the agent's own report is
    offered again when the agent reports it ok (a round follows on commit); the matches that
    failed over stay where they went. A node failed otherwise — by the provider (``fail-nodes``) or
    for a missed provisioning deadline, while its agent said ok — stays failed: the agent's ok is
    what it said all along. Two steps, each its own transaction: record (under the listing's row
    lock, with the recoveries), then fail.
    """
    real_now = real_now or timezone.now()
    listing, recovered = _heartbeat_write(listing_id=listing_id, provider=provider, nodes=nodes, real_now=real_now)
    newly_failed = sorted(n for n, health in nodes.items() if health == "failed" and n not in listing.failed_nodes)
    if newly_failed:
        listing = listing_nodes_fail(
            listing_id=listing_id, provider=provider, nodes=newly_failed, cause="reported failed by its agent"
        )
    return HeartbeatResult(listing=listing, newly_failed=newly_failed, recovered=recovered)


@transaction.atomic
def _heartbeat_write(
    *, listing_id: int, provider: Organisation, nodes: dict[int, str], real_now: datetime
) -> tuple[Listing, list[int]]:
    """Record the heartbeat under the listing's row lock; returns the listing and the failed
    nodes it reported ok (no longer failed)."""
    locked = Listing.objects.select_for_update(of=("self",), no_key=True).select_related("gpu_model")
    listing = locked.filter(pk=listing_id, provider=provider).first()
    if listing is None:
        raise NotFound(gettext("No such listing."), field="listing")
    if listing.status != Listing.Status.ACTIVE:
        raise InvalidTransition(gettext("The listing is %(status)s.") % {"status": listing.status}, field="listing")
    if not nodes or any(not 0 <= node < listing.node_count for node in nodes):
        raise InvalidInput(
            gettext("Nodes are numbered 0 to %(last)s.") % {"last": listing.node_count - 1}, field="nodes"
        )
    recovered = _recoverable(listing, [node for node, health in nodes.items() if health == "ok"])
    if listing.agent_since is None or recovered:
        listing.agent_since = listing.agent_since or real_now
        listing.failed_nodes = [node for node in listing.failed_nodes if node not in recovered]
        listing.save(update_fields=["agent_since", "failed_nodes", "updated_at"])
    if recovered:
        matching_round_enqueue_on_commit(gpu_model_code=listing.gpu_model.code)
    rows = [
        NodeHeartbeat(
            listing=listing, node=node, health=health, seen_at=real_now, ok_at=real_now if health == "ok" else None
        )
        for node, health in sorted(nodes.items())
    ]
    # Two upserts: ``ok_at`` is overwritten only by an ok heartbeat (the failed ones are written
    # apart, without it), so the time of the last good heartbeat survives a failed report.
    ok = [row for row in rows if row.ok_at is not None]
    failed = [row for row in rows if row.ok_at is None]
    unique = ["listing", "node"]
    if ok:
        NodeHeartbeat.objects.bulk_create(
            ok, update_conflicts=True, unique_fields=unique, update_fields=["health", "seen_at", "ok_at"]
        )
    if failed:
        NodeHeartbeat.objects.bulk_create(
            failed, update_conflicts=True, unique_fields=unique, update_fields=["health", "seen_at"]
        )
    return listing, recovered


def _recoverable(listing: Listing, reported_ok: list[int]) -> list[int]:
    """Of the failed nodes now reported ok, those failed for silence or by the agent's report
    (their last record says ``silent`` or ``failed``, or there is none: never heard from)."""
    failed = sorted(set(reported_ok) & set(listing.failed_nodes))
    if not failed:
        return []
    health = dict(NodeHeartbeat.objects.filter(listing=listing, node__in=failed).values_list("node", "health"))
    return [node for node in failed if health.get(node, NodeHeartbeat.Health.SILENT) != NodeHeartbeat.Health.OK]


@dataclass(frozen=True)
class AgentSweepCounts:
    silent_nodes: int
    #: Listings with a match past its provisioning deadline (their nodes failed).
    late_listings: int


def agents_sweep(*, now: datetime, real_now: datetime | None = None) -> AgentSweepCounts:
    """The sweep's part for agents: fail the nodes of agent-driven listings silent for
    ``NODE_HEARTBEAT_TIMEOUT_SECONDS`` (real time), and the nodes of matches on agent-driven
    listings still not ready ``PROVISION_DEADLINE_SECONDS`` after their planned start (market time
    ``now``). Either way the matches on those nodes fail over (``listing_nodes_fail``). A late
    match's nodes are failed, not just the match: nodes its agent cannot provision would
    otherwise win the next round again (they are the cheapest) and keep the buyer waiting.

    Precondition: outside a transaction (each failure is its own). Idempotent: a failed node is
    not failed again, and a failed match is no longer live.
    """
    real_now = real_now or timezone.now()
    silent = silent_nodes_by_listing(real_now=real_now)
    providers = dict(Listing.objects.filter(pk__in=silent).values_list("pk", "provider_id"))
    timeout = settings.NODE_HEARTBEAT_TIMEOUT_SECONDS
    since = silence_since(real_now)
    for listing_id, nodes in sorted(silent.items()):
        # Marked first, and only if still stale: a heartbeat since then overwrites the mark, and
        # ``unless_heard_since`` below then leaves its node up.
        NodeHeartbeat.objects.filter(listing_id=listing_id, node__in=nodes, seen_at__lte=since).update(
            health=NodeHeartbeat.Health.SILENT
        )
        listing_nodes_fail(
            listing_id=listing_id,
            provider=Organisation(pk=providers[listing_id]),
            nodes=nodes,
            now=now,
            cause=f"sent no heartbeat for {timeout} s",
            unless_heard_since=since,
        )
    deadline = settings.PROVISION_DEADLINE_SECONDS
    late = Match.objects.filter(
        status=Match.Status.RESERVED,
        listing__agent_since__isnull=False,
        starts_at__lte=now - timedelta(seconds=deadline),
    ).values_list("listing_id", "listing__provider_id", "nodes")
    late_nodes: dict[tuple[int, int], set[int]] = {}
    for listing_id, provider_id, match_nodes in late:
        late_nodes.setdefault((listing_id, provider_id), set()).update(match_nodes)
    for (listing_id, provider_id), unprovisioned in sorted(late_nodes.items()):
        listing_nodes_fail(
            listing_id=listing_id,
            provider=Organisation(pk=provider_id),
            nodes=sorted(unprovisioned),
            now=now,
            cause=f"missed a provisioning deadline ({deadline} s after a match's planned start)",
        )
    return AgentSweepCounts(silent_nodes=sum(map(len, silent.values())), late_listings=len(late_nodes))
