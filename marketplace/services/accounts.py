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
    """Create a user and a new organisation ``organisation`` of kind ``role`` that it acts for.

    An existing organisation's name is refused: signing up must never make a stranger a member of
    someone else's organisation, with its listings, requests and vouchers. Members are added to
    an existing organisation by staff (the admin).
    """
    if role not in Organisation.Kind.values:
        raise InvalidInput(f'"{role}" is not a role; use provider or buyer.', field="role")
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput("A user with that username already exists.", field="username")
    if Organisation.objects.filter(name__iexact=organisation).exists():
        raise InvalidInput(
            f'"{organisation}" is already registered; ask its members to add you.', field="organisation"
        )
    user = User(username=username, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    org = Organisation.objects.create(name=organisation, kind=role)
    Membership.objects.create(user=user, organisation=org)
    return user
