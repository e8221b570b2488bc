"""Organisations (providers, buyers) and the users who act for them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from marketplace.money import SETTLED_AMOUNT


class Organisation(models.Model):
    """A provider (data-centre operator) or a buyer (model builder, app company)."""

    class Kind(models.TextChoices):
        PROVIDER = "provider"
        BUYER = "buyer"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    #: Where the organisation is registered: city voucher programmes are for local buyers.
    province = models.CharField(max_length=100, blank=True)
    #: CNY a month its requests may commit (reserved worst cases and charges); null: no cap.
    monthly_spend_cap = models.DecimalField(**SETTLED_AMOUNT, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_spend_cap__isnull=True) | Q(monthly_spend_cap__gt=0),
                name="organisation_spend_cap_gt_0",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Ties a user to the one organisation it acts for, as an owner or a member.

    Owners manage the organisation (its API keys, members and spend cap); members act in the
    market only. An organisation always keeps at least one owner (``services.members``).
    """

    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="members")
    #: Owner by default: sign-up makes the organisation's first user, who must be able to manage it.
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.OWNER)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(role__in=["owner", "member"]), name="membership_role_valid")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation}"
