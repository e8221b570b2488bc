"""Reads of webhook endpoints and their delivery logs, each one query (a page, a count)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, QuerySet

from marketplace.models import Organisation, WebhookDelivery, WebhookEndpoint

#: Deliveries one sweep enqueues at most; the rest wait for the next sweep (30 s later by default).
SWEEP_BATCH = 500


def webhook_endpoints_of(organisation: Organisation) -> QuerySet[WebhookEndpoint]:
    """The organisation's endpoints, newest first."""
    return WebhookEndpoint.objects.filter(organisation=organisation).order_by("-created_at", "-pk")


def webhook_deliveries_of(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    """An endpoint's delivery log, newest first."""
    return WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at", "-pk")


def webhook_deliveries_due(*, now: datetime) -> list[int]:
    """Pending deliveries of enabled endpoints whose next attempt is due, oldest due first."""
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, endpoint__disabled_at__isnull=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def webhook_delivery_counts() -> dict[str, int]:
    """Deliveries by status, every status present (0 when none): one query."""
    counts = dict.fromkeys(WebhookDelivery.Status.values, 0)
    rows = WebhookDelivery.objects.order_by().values("status").annotate(n=Count("pk")).values_list("status", "n")
    counts.update(dict(rows))
    return counts
