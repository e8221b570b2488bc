"""Writes to API keys: create, revoke, record use.

Keys expire and are revoked by the wall clock (``timezone.now``), not the market's clock: a
simulated day must not expire real credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from marketplace import api_key_secrets, names
from marketplace.errors import InvalidInput, NotFound
from marketplace.models import ApiKey, Organisation
from marketplace.models.api_keys import SCOPE_ORDER, scopes_text
from marketplace.services.members import owner_check

#: ``last_used_at`` is written at most this often per key: one UPDATE per call would make every
#: read a write, and a minute is precise enough to tell a live key from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class CreatedKey:
    """A new key and its secret: the only time the secret exists outside the client."""

    key: ApiKey
    secret: str


@transaction.atomic
def api_key_create(
    *,
    organisation: Organisation,
    user,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    monthly_spend_cap: Decimal | None = None,
) -> CreatedKey:
    """A key of ``organisation`` acting as ``user`` (an owner of it) with ``scopes``.

    Returns the secret once; only its SHA-256 is stored (``marketplace.api_key_secrets``). The name
    follows ``names.name_check`` (no markup, control or invisible characters): owners and the admin
    read it beside the key.
    """
    owner_check(user, organisation)
    name = names.name_check(name, field="name")
    unknown = sorted(set(scopes) - set(SCOPE_ORDER))
    if unknown or not scopes:
        raise InvalidInput(
            gettext("Choose one or more of %(scopes)s.") % {"scopes": ", ".join(SCOPE_ORDER)}, field="scopes"
        )
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise InvalidInput(gettext("The expiry must be in the future."), field="expires_at")
    secret = api_key_secrets.secret_new()
    key = ApiKey.objects.create(
        organisation=organisation,
        user=user,
        name=name,
        prefix=secret.prefix,
        secret_sha256=secret.sha256,
        scopes=scopes_text(scopes),
        expires_at=expires_at,
        monthly_spend_cap=monthly_spend_cap,
    )
    return CreatedKey(key=key, secret=secret.secret)


@transaction.atomic
def api_key_revoke(*, key_id: int, organisation: Organisation, user) -> ApiKey:
    """Revoke a key of ``organisation`` (``user`` must own it): it is refused from the next call
    on. Revoking a revoked key changes nothing (the first revocation's time stays)."""
    owner_check(user, organisation)
    key = ApiKey.objects.select_for_update(no_key=True).filter(pk=key_id, organisation=organisation).first()
    if key is None:
        raise NotFound(gettext("No such API key."), field="id")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def api_key_used(*, key: ApiKey, now: datetime) -> None:
    """Record that ``key`` authenticated a call, at most once per ``LAST_USED_RESOLUTION``; a
    conditional UPDATE, so concurrent calls write once and nothing waits on a lock."""
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=key.pk, last_used_at=key.last_used_at).update(last_used_at=now)
