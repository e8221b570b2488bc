"""Webhooks: an organisation's endpoints, the deliveries of events to them, and the notices that keep
state-change events from repeating (``services.events``)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from marketplace.models.organisations import Organisation


class WebhookEndpoint(models.Model):
    """An HTTPS URL an organisation registered to receive ``events`` (a list of event types).

    ``secret`` is the Standard Webhooks signing key (``whsec_<base64>``). Unlike an API key it must
    be stored as it is: every delivery is signed with it. ``failing_since`` is the time of the first
    failed attempt since the last success; an endpoint failing for ``WEBHOOK_DISABLE_AFTER_SECONDS``
    is disabled (``disabled_at``) and its organisation's owners are told by e-mail.
    """

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=80)
    created_at = models.DateTimeField(auto_now_add=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.url} ({self.organisation})"


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint: the outbox row, written in the transaction that made
    the event, and the log of every attempt to send it.

    ``event_id`` is the Standard Webhooks ``webhook-id``: the same on every attempt and on a
    redelivery by hand, so a receiver can drop duplicates. ``attempts`` holds one entry per attempt
    (``at``, ``status_code`` or ``error``, ``duration_ms``). A pending delivery is sent when
    ``next_attempt_at`` has come; the sending worker moves it forward by a lease first, so that two
    workers never send the same attempt (``services.webhooks``).
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40, db_index=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    created_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.JSONField(default=list)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The sweep's query: pending deliveries by due time.
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due", condition=Q(status="pending")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="webhook_delivery_status_valid"
            ),
            # Only a pending delivery has a next attempt: a finished one is never sent again.
            models.CheckConstraint(
                condition=Q(status="pending", next_attempt_at__isnull=False)
                | (~Q(status="pending") & Q(next_attempt_at__isnull=True)),
                name="webhook_delivery_next_attempt_iff_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → endpoint {self.endpoint_id}"


class WebhookNotice(models.Model):
    """The last state an event about one object was sent for (say ``listing.idle`` for listing 7:
    "idle"), so that a state that holds round after round is announced once, when it begins."""

    event_type = models.CharField(max_length=40)
    object_id = models.BigIntegerField()
    state = models.CharField(max_length=40)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_type", "object_id"], name="webhook_notice_one_per_object")
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.object_id}: {self.state}"
