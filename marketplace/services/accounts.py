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
        message = gettext('"%(role)s" is not a role; use provider or buyer.') % {"role": role}
        raise InvalidInput(message, field="role")
    organisation = organisation_name_check(organisation)
    user = user_create(username=username, email=email, password=password)
    org = Organisation.objects.create(name=organisation, kind=role)
    Membership.objects.create(user=user, organisation=org, role=Membership.Role.OWNER)
    return user


def organisation_name_check(name: str) -> str:
    """The name a new organisation ``name`` is stored under, or ``InvalidInput`` on ``organisation``:
    it breaks ``names.name_check``, is taken, or looks like a name in use. Reads only, so the
    sign-up page runs it beside the other fields' checks and shows every refusal at once."""
    name = names.name_check(name, field="organisation")
    if Organisation.objects.filter(name__iexact=name).exists():
        message = gettext('"%(name)s" is already registered; ask its owners to add you.') % {"name": name}
        raise InvalidInput(message, field="organisation")
    names.lookalike_check(name, existing=selectors.organisation_names_in_use(), field="organisation")
    return name


def username_check(username: str) -> str:
    """The username ``username`` is stored as (NFKC), or ``InvalidInput`` on ``username``: it is
    taken, or looks like one in use. Reads only (see :func:`organisation_name_check`)."""
    username = names.username_normalise(username)
    if User.objects.filter(username__iexact=username).exists():
        raise InvalidInput(gettext("A user with that username already exists."), field="username")
    names.lookalike_check(username, existing=selectors.usernames_in_use(), field="username")
    return username


def password_check(password: str, *, username: str = "", email: str = "") -> None:
    """``InvalidInput`` on ``password`` with every message of Django's validators
    (``AUTH_PASSWORD_VALIDATORS``) that refuse it for a user of this username and e-mail."""
    try:
        validate_password(password, User(username=username, email=email))
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), field="password") from None


def user_create(*, username: str, email: str, password: str):
    """A new user, by sign-up's rules: the username NFKC-normalised, unused and no look-alike of
    one in use, the password passing Django's validators. Precondition: inside a transaction."""
    username = username_check(username)
    password_check(password, username=username, email=email)
    user = User(username=username, email=email)
    user.set_password(password)
    user.save()
    return user
