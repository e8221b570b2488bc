"""Webhook endpoints and the sending of deliveries (an outbox drained by Celery).

An event is written as one ``WebhookDelivery`` row per subscribed endpoint, in the transaction that
made the event (``services.events``); after that transaction commits, one task per delivery is
enqueued (:func:`webhook_deliveries_enqueue`). A task calls :func:`webhook_delivery_attempt`, which
claims the delivery with a conditional UPDATE (so a duplicate message, or the sweep racing the
task, never sends an attempt twice), sends it outside any transaction, and records the outcome.
A failed attempt is retried after the next delay of ``WEBHOOKS_RETRY_SCHEDULE_SECONDS`` (a delay up
to the sweep interval by a task with that countdown, a longer one by the sweep); the beat sweep
(:func:`marketplace.tasks.webhooks_sweep`) enqueues every pending delivery that is due, so a lost
message delays a delivery but never loses it. An endpoint failing for
``WEBHOOKS_DISABLE_AFTER_SECONDS`` is disabled and its owners get an e-mail.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import httpx
from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace import bounds
from marketplace.errors import InvalidInput, InvalidTransition, NotFound, QuotaExceeded
from marketplace.models import Membership, Organisation, WebhookDelivery, WebhookEndpoint
from marketplace.webhook_addresses import UnsafeUrl, destination_resolve, url_checked
from marketplace.webhook_signatures import secret_generate, signed_headers
from matching.costs import utc_text

logger = logging.getLogger(__name__)

#: The Celery task that sends one delivery (``marketplace.tasks.webhook_deliver``).
WEBHOOK_DELIVER_TASK = "marketplace.webhook_deliver"
USER_AGENT = "gpu-marketplace-webhooks/1"
#: What an attempt's log keeps of a response body: enough to see an error page's first line.
RESPONSE_EXCERPT_CHARS = 200


# --- endpoints ----------------------------------------------------------------------------------


def webhook_url_check(url: str) -> None:
    """Refuse (``InvalidInput`` on ``url``) a URL deliveries may not go to: not https, or a host that
    does not resolve or resolves to a non-public address (``marketplace.webhook_addresses``)."""
    allow = {"allow_http": settings.WEBHOOKS_ALLOW_HTTP, "allow_private": settings.WEBHOOKS_ALLOW_PRIVATE_URLS}
    try:
        url_checked(url, **allow)
        destination_resolve(url, **allow)
    except UnsafeUrl as exc:
        raise InvalidInput(exc.translated(), field="url") from exc


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def webhook_endpoint_create(*, organisation: Organisation, url: str, events: list[str]) -> CreatedEndpoint:
    """Register ``url`` for ``events`` (already validated against ``events.EVENT_TYPES``); returns it
    with its signing secret, which the caller shows once. The URL's host is resolved before the
    transaction begins: a slow DNS answer holds no lock."""
    webhook_url_check(url)
    with transaction.atomic():
        Organisation.objects.select_for_update().filter(pk=organisation.pk).first()  # serialises the count
        if WebhookEndpoint.objects.filter(organisation=organisation).count() >= bounds.WEBHOOK_ENDPOINTS.maximum:
            raise QuotaExceeded(
                _("An organisation may have at most %(n)s webhook endpoints.")
                % {"n": bounds.WEBHOOK_ENDPOINTS.maximum},
                field="url",
            )
        secret = secret_generate()
        endpoint = WebhookEndpoint.objects.create(
            organisation=organisation, url=url, events=sorted(set(events)), secret=secret
        )
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def _endpoint_locked(organisation: Organisation, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id, organisation=organisation).first()
    if endpoint is None:
        raise NotFound(_("No such webhook endpoint."), field="id")
    return endpoint


def webhook_endpoint_update(
    *,
    organisation: Organisation,
    endpoint_id: int,
    url: str | None = None,
    events: list[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change an endpoint's URL or events, or disable or re-enable it (re-enabling forgets its
    failures; deliveries failed meanwhile can be redelivered by hand). A new URL is checked (and
    resolved) before the transaction begins."""
    if url is not None:
        webhook_url_check(url)
    with transaction.atomic():
        return _endpoint_change(organisation, endpoint_id, url=url, events=events, enabled=enabled)


def _endpoint_change(
    organisation: Organisation, endpoint_id: int, *, url: str | None, events: list[str] | None, enabled: bool | None
) -> WebhookEndpoint:
    endpoint = _endpoint_locked(organisation, endpoint_id)
    if url is not None:
        endpoint.url = url
    if events is not None:
        endpoint.events = sorted(set(events))
    if enabled is True:
        endpoint.disabled_at, endpoint.disabled_reason, endpoint.failing_since = None, "", None
    elif enabled is False and endpoint.disabled_at is None:
        _endpoint_disable(endpoint, now=timezone.now(), reason="disabled by its organisation")
    endpoint.save(update_fields=["url", "events", "disabled_at", "disabled_reason", "failing_since"])
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, organisation: Organisation, endpoint_id: int) -> None:
    """Delete an endpoint and its delivery log; events from now on are not written for it."""
    _endpoint_locked(organisation, endpoint_id).delete()


def _endpoint_disable(endpoint: WebhookEndpoint, *, now: datetime, reason: str) -> None:
    """Mark ``endpoint`` disabled (caller saves it) and fail its pending deliveries, so that they
    are not sent whenever it comes back; they stay in the log, to be redelivered by hand."""
    endpoint.disabled_at, endpoint.disabled_reason = now, reason[:300]
    WebhookDelivery.objects.filter(endpoint=endpoint, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None
    )


@transaction.atomic
def webhook_delivery_redeliver(*, organisation: Organisation, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """Send a logged delivery's event again, as a new delivery with the same ``webhook-id`` (so a
    receiver that already has it can tell), enqueued after commit."""
    endpoint = _endpoint_locked(organisation, endpoint_id)
    original = WebhookDelivery.objects.filter(pk=delivery_id, endpoint=endpoint).first()
    if original is None:
        raise NotFound(_("No such delivery for this endpoint."), field="delivery_id")
    if endpoint.disabled_at is not None:
        raise InvalidTransition(
            _("The endpoint is disabled: enable it first (PATCH enabled: true)."), field="enabled"
        )
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=original.event_id,
        event_type=original.event_type,
        payload=original.payload,
        created_at=now,
        next_attempt_at=now,
    )
    webhook_deliveries_enqueue_on_commit([delivery.pk])
    return delivery


# --- sending ------------------------------------------------------------------------------------


def webhook_deliveries_enqueue_on_commit(delivery_ids: list[int]) -> None:
    """After the current transaction commits, enqueue one send per delivery."""
    if delivery_ids:
        transaction.on_commit(partial(webhook_deliveries_enqueue, list(delivery_ids)))


def webhook_deliveries_enqueue(delivery_ids: list[int], *, countdown: float = 0) -> None:
    """Enqueue one send per delivery, to run in ``countdown`` seconds. Never raises: a lost message
    is left to the sweep."""
    for delivery_id in delivery_ids:
        try:
            signature = current_app.signature(WEBHOOK_DELIVER_TASK, kwargs={"delivery_id": delivery_id})
            signature.apply_async(countdown=countdown or None)
        except Exception:
            logger.warning("webhook delivery %s not enqueued; the sweep will send it", delivery_id, exc_info=True)
            return


def retry_delay(attempt_count: int) -> timedelta | None:
    """How long after failed attempt number ``attempt_count`` (from 1) the next one is due, or None
    when the schedule is spent and the delivery has failed for good."""
    schedule = settings.WEBHOOKS_RETRY_SCHEDULE_SECONDS
    if attempt_count > len(schedule):
        return None
    return timedelta(seconds=schedule[attempt_count - 1])


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send ``delivery_id`` if it is pending, due and its endpoint enabled; record the outcome.

    Idempotent: the claim moves ``next_attempt_at`` forward by more than the request's timeout, so
    a second task for the same delivery (a duplicate message, the sweep) finds it not due and does
    nothing; a worker killed mid-send leaves it due again after that lease, for the sweep.
    Returns the delivery as recorded, or None when there was nothing to send.
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS + 30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lte=now,
        endpoint__disabled_at__isnull=True,
    ).update(next_attempt_at=lease)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    outcome = _send(delivery)
    return _attempt_record(delivery_id, outcome)


def _send(delivery: WebhookDelivery) -> dict:
    """One HTTP attempt: the log entry (``at``, ``status_code`` or ``error``, ``duration_ms``, ``ok``).

    The URL is checked and resolved again now (it may resolve elsewhere than at registration) and
    the request goes to the address that passed, with the name as Host and TLS SNI (the certificate
    is verified against the name). Redirects are not followed: a 3xx is a failure.
    """
    started_at, started = timezone.now(), time.perf_counter()
    entry: dict = {"at": utc_text(started_at)}
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()
    allow = {"allow_http": settings.WEBHOOKS_ALLOW_HTTP, "allow_private": settings.WEBHOOKS_ALLOW_PRIVATE_URLS}
    try:
        destination = destination_resolve(delivery.endpoint.url, **allow)
        headers = signed_headers(
            delivery.endpoint.secret, msg_id=delivery.event_id, timestamp=int(time.time()), body=body
        )
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT, "host": destination.host_header}
        with httpx.Client(timeout=settings.WEBHOOKS_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = client.post(
                destination.pinned_url, content=body, headers=headers, extensions={"sni_hostname": destination.host}
            )
        entry["status_code"] = response.status_code
        entry["ok"] = 200 <= response.status_code < 300
        if not entry["ok"]:
            entry["error"] = f"HTTP {response.status_code}: {response.text[:RESPONSE_EXCERPT_CHARS]}"
    except UnsafeUrl as exc:
        entry |= {"ok": False, "error": f"refused: {exc}"}
    except httpx.HTTPError as exc:
        entry |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return entry


@transaction.atomic
def _attempt_record(delivery_id: int, entry: dict) -> WebhookDelivery | None:
    """Append ``entry`` to the delivery's log and schedule its next attempt, finish it, or (after
    ``WEBHOOKS_DISABLE_AFTER_SECONDS`` of failures) disable its endpoint. Lock order: the delivery,
    then its endpoint. None if the endpoint (and with it the delivery) was deleted meanwhile."""
    delivery = WebhookDelivery.objects.select_for_update().filter(pk=delivery_id).first()
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=delivery.endpoint_id).first() if delivery else None
    if delivery is None or endpoint is None:
        return None
    now = timezone.now()
    delivery.attempt_count += 1
    if entry["ok"]:
        delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.SUCCEEDED, None
        endpoint.failing_since = None
    else:
        delay = retry_delay(delivery.attempt_count)
        if delay is None:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, None
        else:
            delivery.next_attempt_at = now + delay
            if delay.total_seconds() <= settings.WEBHOOKS_SWEEP_SECONDS:
                # A short delay is kept to the second by a task of its own; longer ones wait for
                # the sweep (a message held for hours by a worker would outlive Redis's visibility
                # timeout and come back twice: harmless, the claim drops it, but wasteful).
                retry = partial(webhook_deliveries_enqueue, [delivery.pk], countdown=delay.total_seconds())
                transaction.on_commit(retry)
        endpoint.failing_since = endpoint.failing_since or datetime.fromisoformat(entry["at"])
    entry["next_attempt_at"] = utc_text(delivery.next_attempt_at) if delivery.next_attempt_at else None
    delivery.attempts = [*delivery.attempts, entry]
    delivery.save(update_fields=["attempt_count", "status", "next_attempt_at", "attempts"])
    failing_for = now - endpoint.failing_since if endpoint.failing_since else timedelta(0)
    if endpoint.disabled_at is None and failing_for >= timedelta(seconds=settings.WEBHOOKS_DISABLE_AFTER_SECONDS):
        since = f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
        _endpoint_disable(endpoint, now=now, reason=f"every delivery failed since {since}")
        transaction.on_commit(partial(_owners_tell_disabled, endpoint.pk))
        delivery.refresh_from_db()
    endpoint.save(update_fields=["failing_since", "disabled_at", "disabled_reason"])
    return delivery


def _owners_tell_disabled(endpoint_id: int) -> None:
    """E-mail the owners of a disabled endpoint's organisation. Never raises (runs after commit)."""
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        return
    owners = Membership.objects.filter(
        organisation_id=endpoint.organisation_id, role=Membership.Role.OWNER
    ).select_related("user")
    recipients = sorted({m.user.email for m in owners if m.user.email})
    if not recipients:
        return
    subject = _("Webhook endpoint disabled: %(url)s") % {"url": endpoint.url}
    message = _(
        "Every delivery to %(url)s has failed since %(since)s (UTC), so the marketplace stopped sending to it. "
        "Fix the receiver, then enable the endpoint again (PATCH /api/v1/webhooks/%(id)s/ with "
        '{"enabled": true}) and redeliver the events you missed from its delivery log.'
    ) % {"url": endpoint.url, "since": f"{endpoint.failing_since:%Y-%m-%d %H:%M}", "id": endpoint.pk}
    try:
        send_mail(subject, message, None, recipients)
    except Exception:
        logger.exception("could not e-mail the owners of disabled webhook endpoint %s", endpoint_id)
