"""Who is calling: the caller's provider or buyer organisation, and the permissions built on them."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from marketplace import selectors
from marketplace.models import Organisation


def provider_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.PROVIDER)


def buyer_of(request) -> Organisation | None:
    return selectors.organisation_of(request.user, kind=Organisation.Kind.BUYER)


class IsProvider(BasePermission):
    message = "Only provider accounts may do this."

    def has_permission(self, request, view) -> bool:
        return provider_of(request) is not None


class IsBuyer(BasePermission):
    message = "Only buyer accounts may do this."

    def has_permission(self, request, view) -> bool:
        return buyer_of(request) is not None
