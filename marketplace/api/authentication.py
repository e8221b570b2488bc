"""Who is calling, by ``Authorization: Token <secret>``: an API key, or a legacy DRF token.

One header, two kinds of secret: a key's starts with ``gmk_`` (``marketplace.api_key_secrets``)
and authenticates as its user with its scopes only (``request.auth`` is the ``ApiKey``); any other
is looked up as DRF's token, as before, with every scope. A revoked or expired key, or a key whose
user no longer belongs to the key's organisation, is a 401 from the next call on: nothing is cached.
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from marketplace import api_key_secrets, services
from marketplace.models import ApiKey


class ApiKeyAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication``, which also takes API keys."""

    def authenticate_credentials(self, key: str):
        if not api_key_secrets.is_api_key_secret(key):
            return super().authenticate_credentials(key)
        prefix = api_key_secrets.prefix_of(key)
        api_key = ApiKey.objects.select_related("user__membership").filter(prefix=prefix).first() if prefix else None
        if api_key is None or not api_key_secrets.secret_matches(key, api_key.secret_sha256):
            raise AuthenticationFailed(_("Invalid API key."))
        now = timezone.now()
        if api_key.revoked_at is not None:
            raise AuthenticationFailed(_("This API key was revoked."))
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise AuthenticationFailed(_("This API key has expired."))
        user = api_key.user
        membership = getattr(user, "membership", None)
        if not user.is_active or membership is None or membership.organisation_id != api_key.organisation_id:
            raise AuthenticationFailed(_("This API key's user no longer acts for its organisation."))
        services.api_key_used(key=api_key, now=now)
        return user, api_key
