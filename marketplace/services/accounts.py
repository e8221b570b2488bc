"""Sign-up: a user and the provider or buyer organisation it acts for."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from marketplace.errors import InvalidInput
from marketplace.models import Membership, Organisation

User = get_user_model()


@transaction.atomic
def account_register(*, username: str, password: str, email: str, role: str, organisation: str):
    """Create a user and its membership of ``organisation`` (created when new, of kind ``role``).

    Joining an existing organisation of the other kind is refused: a user is a provider or a buyer.
    """
    if role not in Organisation.Kind.values:
        raise InvalidInput(f'"{role}" is not a role; use provider or buyer.', field="role")
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput("A user with that username already exists.", field="username")
    org, _ = Organisation.objects.get_or_create(name=organisation, defaults={"kind": role})
    if org.kind != role:
        raise InvalidInput(f'"{organisation}" is a {org.kind} organisation.', field="organisation")
    user = User(username=username, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    Membership.objects.create(user=user, organisation=org)
    return user
