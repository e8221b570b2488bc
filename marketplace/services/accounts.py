"""Sign-up: a user and the provider or buyer organisation it acts for."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext

from marketplace import names, selectors
from marketplace.errors import InvalidInput
from marketplace.models import Membership, Organisation

User = get_user_model()


@transaction.atomic
def account_register(*, username: str, password: str, email: str, role: str, organisation: str):
    """Create a user and a new organisation ``organisation`` of kind ``role`` that it acts for.

    An existing organisation's name is refused: signing up must never make a stranger a member of
    someone else's organisation, with its listings, requests and vouchers. Members are added to
    an existing organisation by its owners (``services.members.member_add``).

    Both names follow ``marketplace.names``: the username is stored NFKC-normalised, the
    organisation's name may hold no invisible or control characters and no markup, and neither
    may look like a name in use (``demo-аdmin`` with a Cyrillic а is not ``demo-admin``'s twin).
    """
    if role not in Organisation.Kind.values:
        raise InvalidInput(gettext('"%(role)s" is not a role; use provider or buyer.') % {"role": role}, field="role")
    organisation = names.name_check(organisation, field="organisation")
    if Organisation.objects.filter(name__iexact=organisation).exists():
        raise InvalidInput(
            gettext('"%(name)s" is already registered; ask its owners to add you.') % {"name": organisation},
            field="organisation",
        )
    names.lookalike_check(organisation, existing=selectors.organisation_names_in_use(), field="organisation")
    user = user_create(username=username, email=email, password=password)
    org = Organisation.objects.create(name=organisation, kind=role)
    Membership.objects.create(user=user, organisation=org, role=Membership.Role.OWNER)
    return user


def user_create(*, username: str, email: str, password: str):
    """A new user, by sign-up's rules: the username NFKC-normalised, unused and no look-alike of
    one in use, the password passing Django's validators. Precondition: inside a transaction."""
    username = names.username_normalise(username)
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput(gettext("A user with that username already exists."), field="username")
    names.lookalike_check(username, existing=selectors.usernames_in_use(), field="username")
    user = User(username=username, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save()
    return user
