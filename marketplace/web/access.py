"""Who may open a page: signed-in providers, buyers, or staff. Others are sent to sign in (when
anonymous) or refused with a 403 page (when signed in with another role)."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.utils.translation import gettext

from marketplace import selectors
from marketplace.models import Membership, Organisation


def _forbidden(request, message: str):
    return render(request, "web/403.html", {"message": message}, status=403)


def _refusal(kind: str | None) -> str:
    """What the 403 page says to a member of another kind of organisation (or of none)."""
    if kind == Organisation.Kind.PROVIDER:
        return gettext("This page is for provider accounts.")
    if kind == Organisation.Kind.BUYER:
        return gettext("This page is for buyer accounts.")
    return gettext("Statements are for buyer and provider accounts.")


def organisation_required(kind: str | None):
    """Decorator: the view runs for a member of a ``kind`` organisation (``None``: of either kind)
    and receives it as the keyword argument ``organisation``."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            organisation = selectors.organisation_of(request.user, kind=kind)
            if organisation is None:
                return _forbidden(request, _refusal(kind))
            return view(request, *args, organisation=organisation, **kwargs)

        return wrapped

    return decorator


#: A member of a provider or a buyer organisation (the statements pages).
member_required = organisation_required(None)


def staff_required(view):
    """Decorator: the view runs for staff users only."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            return _forbidden(request, gettext("The match monitor is for marketplace staff."))
        return view(request, *args, **kwargs)

    return wrapped


def owner_required(view):
    """Decorator: the view runs for an owner of a provider or buyer organisation and receives it
    as the keyword argument ``organisation``."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        organisation = selectors.organisation_of(request.user)
        if organisation is None or request.user.membership.role != Membership.Role.OWNER:
            return _forbidden(request, gettext("This page is for the organisation's owners."))
        return view(request, *args, organisation=organisation, **kwargs)

    return wrapped
