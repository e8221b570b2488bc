"""Ending a user's API credentials, when its web session ends or its password changes."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from marketplace.models import ApiKey


@transaction.atomic
def user_credentials_revoke(*, user) -> int:
    """Revoke every API credential of ``user``: its legacy token is deleted and its keys revoked.
    Called when the user signs out of the web or changes its password, so a credential copied
    from a session does not outlive it. Returns how many credentials ended."""
    tokens, _ = Token.objects.filter(user=user).delete()
    keys = ApiKey.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return tokens + keys
