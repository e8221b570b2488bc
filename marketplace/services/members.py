"""Writes to an organisation's members and settings: add, change role, remove, set the spend cap.

Only owners manage an organisation, and it always keeps one: every change that could remove the
last owner holds the organisation's row lock (the first kind in ``services.locking``), so two
owners demoting each other at once cannot both succeed.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext

from marketplace.errors import InvalidInput, NotAllowed, NotFound
from marketplace.models import Membership, Organisation
from marketplace.services.accounts import user_create
from marketplace.services.credentials import user_credentials_revoke


def owner_check(user, organisation: Organisation) -> None:
    """Raise ``NotAllowed`` unless ``user`` is an owner of ``organisation``."""
    membership = Membership.objects.filter(user=user, organisation=organisation).only("role").first()
    if membership is None or membership.role != Membership.Role.OWNER:
        raise NotAllowed(gettext("Only the organisation's owners may do this."))


@transaction.atomic
def member_add(*, organisation: Organisation, by, username: str, email: str, password: str, role: str) -> Membership:
    """A new user acting for ``organisation`` with ``role``, created by its owner ``by``. The
    username and password follow sign-up's rules (``services.accounts.user_create``)."""
    owner_check(by, organisation)
    _role_check(role)
    user = user_create(username=username, email=email, password=password)
    return Membership.objects.create(user=user, organisation=organisation, role=role)


@transaction.atomic
def member_role_change(*, organisation: Organisation, by, membership_id: int, role: str) -> Membership:
    """Make a member an owner or an owner a member; never demote the last owner."""
    owner_check(by, organisation)
    _role_check(role)
    membership = _membership_locked(organisation, membership_id)
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
        _last_owner_check(organisation, field="role")
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def member_remove(*, organisation: Organisation, by, membership_id: int) -> None:
    """Remove a member from ``organisation``: the user stays but acts for nobody, and its API
    keys are revoked (they act as it). Never the last owner."""
    owner_check(by, organisation)
    membership = _membership_locked(organisation, membership_id)
    if membership.role == Membership.Role.OWNER:
        _last_owner_check(organisation, field="id")
    user_credentials_revoke(user=membership.user)
    membership.delete()


@transaction.atomic
def organisation_spend_cap_set(*, organisation: Organisation, by, monthly_spend_cap: Decimal | None) -> Organisation:
    """Set (or with None lift) ``organisation``'s monthly spend cap. A lower cap than the month's
    committed spend refuses further requests; it does not undo accepted ones."""
    owner_check(by, organisation)
    locked = Organisation.objects.select_for_update(no_key=True).get(pk=organisation.pk)
    locked.monthly_spend_cap = monthly_spend_cap
    locked.save(update_fields=["monthly_spend_cap"])
    return locked


def _role_check(role: str) -> None:
    if role not in Membership.Role.values:
        raise InvalidInput(gettext('"%(role)s" is not a role; use owner or member.') % {"role": role}, field="role")


def _membership_locked(organisation: Organisation, membership_id: int) -> Membership:
    """The membership, after the organisation's row lock (the lock order's first kind)."""
    Organisation.objects.select_for_update(no_key=True).filter(pk=organisation.pk).first()
    membership = Membership.objects.select_related("user").filter(pk=membership_id, organisation=organisation).first()
    if membership is None:
        raise NotFound(gettext("No such member."), field="id")
    return membership


def _last_owner_check(organisation: Organisation, *, field: str) -> None:
    """Refuse to take away the organisation's last owner. Precondition: its row is locked."""
    if Membership.objects.filter(organisation=organisation, role=Membership.Role.OWNER).count() <= 1:
        raise InvalidInput(
            gettext("This is the organisation's last owner; make another member an owner first."), field=field
        )
