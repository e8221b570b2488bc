from rest_framework.permissions import BasePermission

from marketplace import selectors
from marketplace.models import Organisation


class IsProvider(BasePermission):
    message = "Only provider accounts may do this."

    def has_permission(self, request, view) -> bool:
        return selectors.organisation_of(request.user, kind=Organisation.Kind.PROVIDER) is not None


class IsBuyer(BasePermission):
    message = "Only buyer accounts may do this."

    def has_permission(self, request, view) -> bool:
        return selectors.organisation_of(request.user, kind=Organisation.Kind.BUYER) is not None
