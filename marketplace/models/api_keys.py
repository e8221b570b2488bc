"""API keys: named, scoped, optionally expiring credentials an organisation's owners create."""

from __future__ import annotations

from itertools import combinations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from marketplace.models.organisations import Organisation
from marketplace.money import SETTLED_AMOUNT


class Scope(models.TextChoices):
    """What a key may do. A session or a legacy token has every scope."""

    #: Reads (GET, HEAD, OPTIONS) of anything the caller may see.
    READ = "read"
    #: Market writes: listings, requests, cancels, quotes, voucher claims and programmes.
    TRADE = "trade"
    #: A provider's agent: provisioning and heartbeats (endpoints of a later issue).
    AGENT = "agent"
    #: The organisation itself: its keys, its members, its spend cap.
    ADMIN = "admin"


#: Scopes in their one stored order: a key's ``scopes`` column holds a subset of them in this order,
#: joined by spaces (as OAuth writes scopes), so the database can check it is one.
SCOPE_ORDER: tuple[str, ...] = tuple(Scope.values)
SCOPE_SETS: tuple[str, ...] = tuple(
    " ".join(subset) for size in range(1, len(SCOPE_ORDER) + 1) for subset in combinations(SCOPE_ORDER, size)
)


def scopes_text(scopes) -> str:
    """``scopes`` (any iterable of scope names) in the stored form: known ones, in order, once each."""
    wanted = set(scopes)
    return " ".join(scope for scope in SCOPE_ORDER if scope in wanted)


class ApiKey(models.Model):
    """A secret a client sends as ``Authorization: Token <secret>``, acting for ``user`` within
    ``organisation`` with ``scopes`` only. The secret is never stored: ``prefix`` finds the row and
    ``secret_sha256`` checks the rest (``marketplace.api_key_secrets``). Revoked or expired keys
    stay as rows, for the record, and authenticate nobody."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="api_keys")
    #: Who created it and whom it acts as; signing out or changing the password revokes it.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_sha256 = models.CharField(max_length=64)
    scopes = models.CharField(max_length=40)
    #: CNY a month the key's requests may commit (reserved worst cases and charges); null: no cap.
    monthly_spend_cap = models.DecimalField(**SETTLED_AMOUNT, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    Scope = Scope

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=Q(scopes__in=SCOPE_SETS), name="api_key_scopes_known_subset"),
            models.CheckConstraint(
                condition=Q(monthly_spend_cap__isnull=True) | Q(monthly_spend_cap__gt=0),
                name="api_key_spend_cap_gt_0",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=F("created_at")),
                name="api_key_expires_after_creation",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="api_key_name_not_blank"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()
