"""Reads of an organisation's own management: its API keys (with their month's spend), its
members, and what it has committed against its monthly spend cap."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from marketplace.models import ApiKey, BuyerRequest, Membership, Organisation
from marketplace.money import SETTLED_AMOUNT


def api_keys_of(organisation: Organisation, *, month: date) -> QuerySet[ApiKey]:
    """The organisation's keys, newest first, each with ``spent_this_month``: what its requests
    commit in ``month`` (``services.spend``). One query."""
    spent = Sum("requests__spend_committed", filter=Q(requests__spend_month=month))
    zero = Value(Decimal(0), output_field=DecimalField(**SETTLED_AMOUNT))
    return (
        ApiKey.objects.filter(organisation=organisation)
        .annotate(spent_this_month=Coalesce(spent, zero))
        .order_by("-created_at", "-id")
    )


def members_of(organisation: Organisation) -> QuerySet[Membership]:
    """The organisation's memberships with their users, owners first, then by username."""
    return (
        Membership.objects.filter(organisation=organisation).select_related("user").order_by("-role", "user__username")
    )


def organisation_spent(organisation: Organisation, *, month: date) -> Decimal:
    """What the organisation's requests commit in ``month`` against its cap."""
    rows = BuyerRequest.objects.filter(buyer=organisation, spend_month=month)
    return rows.aggregate(total=Sum("spend_committed"))["total"] or Decimal(0)
