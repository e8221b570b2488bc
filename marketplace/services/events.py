"""Events for webhooks: the one way the market tells an organisation that something happened.

:func:`events_publish` writes, in the caller's transaction, one delivery per enabled endpoint of the
event's organisation that subscribed to its type, and enqueues their sending after commit
(``services.webhooks``). An event names exactly one organisation, the party it concerns, and only
that organisation's endpoints ever receive it: a request's events go to its buyer; a match's to its
buyer and, as a separate event, to its listing's provider; a listing's to its provider; a voucher
programme's to the provider that sponsors it (a city programme has no organisation to tell).

The publishers below are called by the services at the points where the state changes; each costs
a constant number of queries however many events it writes. Events that describe a lasting state
(``request.unserved``, ``listing.idle``, ``voucher_program.budget_low``) are sent once when the state
begins, not on every round it holds (``WebhookNotice``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from marketplace.models import BuyerRequest, Listing, Match, VoucherProgram, WebhookDelivery, WebhookEndpoint
from marketplace.models.webhooks import WebhookNotice
from marketplace.services.webhooks import webhook_deliveries_enqueue_on_commit
from matching.costs import utc_text

REQUEST_MATCHED = "request.matched"
REQUEST_UNSERVED = "request.unserved"
MATCH_RUNNING = "match.running"
MATCH_FAILED = "match.failed"
MATCH_COMPLETED = "match.completed"
#: An interruptible match was given notice: it ends at its ``preempt_at`` (``services.plans.matches_preempt``).
MATCH_PREEMPTED = "match.preempted"
LISTING_IDLE = "listing.idle"
PROGRAM_BUDGET_LOW = "voucher_program.budget_low"
#: The event types an endpoint may subscribe to.
EVENT_TYPES = (
    REQUEST_MATCHED,
    REQUEST_UNSERVED,
    MATCH_RUNNING,
    MATCH_FAILED,
    MATCH_COMPLETED,
    MATCH_PREEMPTED,
    LISTING_IDLE,
    PROGRAM_BUDGET_LOW,
)


@dataclass(frozen=True)
class Event:
    """``kind`` happened to something of ``organisation_id``'s; ``data`` is the payload's ``data``."""

    kind: str
    organisation_id: int
    data: dict


def events_publish(events: Iterable[Event]) -> list[int]:
    """Write the deliveries of ``events`` (the outbox) and enqueue them after commit; their ids.

    Precondition: inside the transaction that made the events happen, so that an event exists if
    and only if its change committed. Two queries however many events.
    """
    events = [event for event in events if event.kind in EVENT_TYPES]
    if not events:
        return []
    endpoints: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in WebhookEndpoint.objects.filter(
        organisation_id__in={event.organisation_id for event in events}, disabled_at__isnull=True
    ).only("pk", "organisation_id", "events"):
        endpoints.setdefault(endpoint.organisation_id, []).append(endpoint)
    now = timezone.now()
    rows = []
    for event in events:
        subscribed = [e for e in endpoints.get(event.organisation_id, []) if event.kind in e.events]
        if not subscribed:
            continue
        msg_id = f"msg_{uuid.uuid4().hex}"
        payload = {"type": event.kind, "timestamp": utc_text(now), "data": event.data}
        rows += [
            WebhookDelivery(
                endpoint=endpoint,
                event_id=msg_id,
                event_type=event.kind,
                payload=payload,
                created_at=now,
                next_attempt_at=now,
            )
            for endpoint in subscribed
        ]
    ids = [row.pk for row in WebhookDelivery.objects.bulk_create(rows)]
    webhook_deliveries_enqueue_on_commit(ids)
    return ids


def event_publish(kind: str, organisation_id: int, data: dict) -> list[int]:
    """One event: :func:`events_publish` of ``Event(kind, organisation_id, data)``."""
    return events_publish([Event(kind, organisation_id, data)])


def _states_changed(kind: str, states: dict[int, str], now: datetime) -> set[int]:
    """Record the current ``states`` of objects for ``kind``; the ids whose state differs from the
    one last recorded (an object never recorded counts as changed). Precondition: the objects are
    locked, or only one process writes their state (a shard's round)."""
    if not states:
        return set()
    known = dict(
        WebhookNotice.objects.filter(event_type=kind, object_id__in=list(states)).values_list("object_id", "state")
    )
    changed = {pk for pk, state in states.items() if known.get(pk) != state}
    WebhookNotice.objects.bulk_create(
        [WebhookNotice(event_type=kind, object_id=pk, state=states[pk], changed_at=now) for pk in sorted(changed)],
        update_conflicts=True,
        unique_fields=["event_type", "object_id"],
        update_fields=["state", "changed_at"],
    )
    return changed


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# --- requests -----------------------------------------------------------------------------------


def requests_matched_publish(requests: dict[int, BuyerRequest], matches: Sequence[Match]) -> None:
    """``request.matched`` to each buyer whose request a round just placed, with the new matches.

    Precondition: inside the plan's transaction; ``requests`` hold their new matched replicas."""
    by_request: dict[int, list[Match]] = {}
    for match in matches:
        by_request.setdefault(match.request_id, []).append(match)
    events = []
    for request_id, placed in sorted(by_request.items()):
        request = requests[request_id]
        data = {
            "request": request.pk,
            "replicas": request.replicas,
            "matched_replicas": request.matched_replicas,
            "matches": [_match_data(match) for match in placed],
        }
        events.append(Event(REQUEST_MATCHED, request.buyer_id, data))
    events_publish(events)


def requests_unserved_publish(unserved: Sequence[Mapping[str, Any]], *, run_id: int, now: datetime) -> None:
    """``request.unserved`` to the buyer of each request a round left (partly) unplaced, once per
    change in how many replicas are left unplaced (not on every round that leaves them so).
    ``unserved`` is the run's ``unserved`` list (``request``, ``replicas``, ``reason``)."""
    by_request = {entry["request"]: entry for entry in unserved}
    changed = _states_changed(REQUEST_UNSERVED, {pk: str(entry["replicas"]) for pk, entry in by_request.items()}, now)
    buyers = dict(BuyerRequest.objects.filter(pk__in=changed).values_list("pk", "buyer_id"))
    events_publish(
        Event(
            REQUEST_UNSERVED,
            buyers[pk],
            {
                "request": pk,
                "unserved_replicas": by_request[pk]["replicas"],
                "reason": by_request[pk]["reason"],
                "run": run_id,
            },
        )
        for pk in sorted(changed)
        if pk in buyers
    )


# --- matches ------------------------------------------------------------------------------------


def _match_data(match: Match) -> dict:
    return {
        "match": match.pk,
        "request": match.request_id,
        "listing": match.listing_id,
        "status": match.status,
        "status_reason": match.status_reason,
        "replicas": match.replicas,
        "gpus": match.gpus,
        "price_per_gpu_hour": _money(match.price_per_gpu_hour),
        "starts_at": utc_text(match.starts_at),
        "ends_at": utc_text(match.ends_at),
        "ended_at": utc_text(match.ended_at) if match.ended_at else None,
        "preempt_at": utc_text(match.preempt_at) if match.preempt_at else None,
    }


def matches_publish(kind: str, matches: Iterable[Match]) -> None:
    """``kind`` (``match.running``, ``match.failed``, ``match.completed``, ``match.preempted``) for each match: one
    event to its buyer and one to its listing's provider. The buyer's also carries the match's
    ``endpoint`` (set by the provider's agent when it said ready; null otherwise), which only the
    buyer may see. Precondition: ``request`` and ``listing`` loaded, inside the transaction that
    changed the matches."""
    events = []
    for match in matches:
        data = _match_data(match)
        events.append(Event(kind, match.request.buyer_id, {**data, "endpoint": match.endpoint or None}))
        events.append(Event(kind, match.listing.provider_id, data))
    events_publish(events)


def matches_started_publish(match_ids: Sequence[int]) -> None:
    """``match.running`` for the matches just started (by id)."""
    if match_ids:
        matches_publish(MATCH_RUNNING, Match.objects.filter(pk__in=match_ids).select_related("request", "listing"))


# --- listings and programmes --------------------------------------------------------------------


@transaction.atomic
def listings_idle_publish(*, gpu_model_code: str, run_id: int, now: datetime) -> None:
    """``listing.idle`` to the provider of each active listing of the shard that a round left with
    idle GPUs (none allocated of some), once when it becomes idle: not again while it stays idle,
    again after a round has left it fully allocated. Precondition: the caller holds the shard's
    lock (only its rounds write these listings' notices)."""
    listings = list(
        Listing.objects.filter(gpu_model__code=gpu_model_code, status=Listing.Status.ACTIVE, available_until__gt=now)
        .annotate(idle_gpus=F("gpu_count") - F("allocated_gpus"))
        .values("pk", "provider_id", "gpu_count", "allocated_gpus", "idle_gpus", "region__code")
    )
    states = {row["pk"]: "idle" if row["idle_gpus"] > 0 else "busy" for row in listings}
    changed = _states_changed(LISTING_IDLE, states, now)
    events_publish(
        Event(
            LISTING_IDLE,
            row["provider_id"],
            {
                "listing": row["pk"],
                "gpu_model": gpu_model_code,
                "region": row["region__code"],
                "gpu_count": row["gpu_count"],
                "idle_gpus": row["idle_gpus"],
                "run": run_id,
            },
        )
        for row in listings
        if row["pk"] in changed and states[row["pk"]] == "idle"
    )


def programs_budget_low_publish(program_ids: Iterable[int], *, now: datetime) -> None:
    """``voucher_program.budget_low`` to the sponsoring provider of each programme whose remaining
    budget fell below ``WEBHOOKS_BUDGET_LOW_PERCENT`` of its budget: once when it falls, again only
    after releases lifted it back above. Precondition: the programmes are locked (their balance
    just changed under the lock)."""
    programs = list(
        VoucherProgram.objects.filter(pk__in=list(program_ids)).values(
            "pk", "name", "budget", "remaining_budget", "sponsor_provider_id"
        )
    )
    threshold = Decimal(settings.WEBHOOKS_BUDGET_LOW_PERCENT) / 100
    states = {p["pk"]: "low" if p["remaining_budget"] < p["budget"] * threshold else "ok" for p in programs}
    changed = _states_changed(PROGRAM_BUDGET_LOW, states, now)
    events_publish(
        Event(
            PROGRAM_BUDGET_LOW,
            p["sponsor_provider_id"],
            {
                "voucher_program": p["pk"],
                "name": p["name"],
                "budget": str(p["budget"]),
                "remaining_budget": str(p["remaining_budget"]),
                "threshold_percent": settings.WEBHOOKS_BUDGET_LOW_PERCENT,
            },
        )
        for p in programs
        if p["pk"] in changed and states[p["pk"]] == "low" and p["sponsor_provider_id"]
    )
