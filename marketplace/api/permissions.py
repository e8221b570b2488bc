"""Who is calling: the caller's provider or buyer organisation, its role in it, and its key's scopes."""

from __future__ import annotations

from django.utils.translation import gettext, gettext_lazy
from rest_framework.permissions import SAFE_METHODS, BasePermission

from marketplace import selectors
from marketplace.models import ApiKey, Membership, Organisation
from marketplace.models.api_keys import Scope


def provider_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.PROVIDER)


def buyer_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.BUYER)


def api_key_of(request) -> ApiKey | None:
    """The API key the call came with (None: a session or a legacy token)."""
    return request.auth if isinstance(request.auth, ApiKey) else None


class IsProvider(BasePermission):
    message = gettext_lazy("Only provider accounts may do this.")

    def has_permission(self, request, view) -> bool:
        return provider_of(request) is not None


class IsBuyer(BasePermission):
    message = gettext_lazy("Only buyer accounts may do this.")

    def has_permission(self, request, view) -> bool:
        return buyer_of(request) is not None


class KeyScopes(BasePermission):
    """An API key acts within its scopes; sessions and legacy tokens hold every scope.

    A view needs ``read_scope`` for safe methods (GET, HEAD, OPTIONS) and ``write_scope`` for the
    others; by default ``read`` and ``trade``, so a new view is covered without a line. A view of
    the organisation itself sets ``admin`` (keys, members), a provider agent's view ``agent``.
    In ``DEFAULT_PERMISSION_CLASSES``, and in every view's own ``permission_classes`` (via
    ``scoped``); ``tests/marketplace/test_api_keys.py`` checks that no API view goes without it.
    """

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        if request.method in SAFE_METHODS:
            needed = getattr(view, "read_scope", Scope.READ)
        else:
            needed = getattr(view, "write_scope", Scope.TRADE)
        if needed in key.scope_list:
            return True
        self.message = gettext('This API key lacks the "%(needed)s" scope (it has: %(scopes)s).') % {
            "needed": needed,
            "scopes": ", ".join(key.scope_list),
        }
        return False


def scoped(*permissions: type[BasePermission]) -> list[type[BasePermission]]:
    """A view's ``permission_classes``: ``KeyScopes`` and then ``permissions``."""
    return [KeyScopes, *permissions]


class IsOwner(BasePermission):
    """Owners of an organisation manage it (its keys, members, spend cap)."""

    message = gettext_lazy("Only the organisation's owners may do this.")

    def has_permission(self, request, view) -> bool:
        membership = getattr(request.user, "membership", None) if request.user.is_authenticated else None
        return membership is not None and membership.role == Membership.Role.OWNER
