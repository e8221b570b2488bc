"""Organisations (providers, buyers) and the users who act for them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Organisation(models.Model):
    """A provider (data-centre operator) or a buyer (model builder, app company)."""

    class Kind(models.TextChoices):
        PROVIDER = "provider"
        BUYER = "buyer"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    #: Where the organisation is registered: city voucher programmes are for local buyers.
    province = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Ties a user to the one organisation it acts for."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation}"
