"""The organisation page: its owners see and manage members, API keys and the monthly spend cap.

A new key's secret is shown in the response to the form that created it and nowhere else: it is
never put in the session or a message, so reloading the page cannot show it again.
"""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from marketplace import selectors, services
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.services.spend import spend_month_of
from marketplace.web.access import owner_required
from marketplace.web.forms import ApiKeyForm, MemberForm, RoleForm, SpendCapForm


def _page(request, organisation, *, status: int = 200, **forms):
    month = spend_month_of(market_now())
    cap_form = SpendCapForm(initial={"monthly_spend_cap": organisation.monthly_spend_cap})
    context = {
        "organisation": organisation,
        "month": month,
        "spent": selectors.organisation_spent(organisation, month=month),
        "members": selectors.members_of(organisation),
        "keys": selectors.api_keys_of(organisation, month=month).select_related("user"),
        "role_choices": RoleForm.base_fields["role"].choices,
        "key_form": forms.get("key_form") or ApiKeyForm(),
        "member_form": forms.get("member_form") or MemberForm(),
        "cap_form": forms.get("cap_form") or cap_form,
        "new_secret": forms.get("new_secret"),
    }
    return render(request, "web/organisation.html", context, status=status)


@owner_required
def page(request, *, organisation):
    return _page(request, organisation)


@require_POST
@owner_required
def key_create(request, *, organisation):
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            created = services.api_key_create(organisation=organisation, user=request.user, **form.cleaned_data)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            return _page(request, organisation, new_secret=created)
    return _page(request, organisation, key_form=form, status=400)


@require_POST
@owner_required
def key_revoke(request, key_id: int, *, organisation):
    try:
        key = services.api_key_revoke(key_id=key_id, organisation=organisation, user=request.user)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Key %(name)s revoked: it is refused from now on.") % {"name": key.name})
    return redirect("web:organisation")


@require_POST
@owner_required
def member_add(request, *, organisation):
    form = MemberForm(request.POST)
    if form.is_valid():
        try:
            membership = services.member_add(organisation=organisation, by=request.user, **form.cleaned_data)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, _("%(user)s added.") % {"user": membership.user.username})
            return redirect("web:organisation")
    return _page(request, organisation, member_form=form, status=400)


@require_POST
@owner_required
def member_role(request, member_id: int, *, organisation):
    form = RoleForm(request.POST)
    try:
        if not form.is_valid():
            raise DomainError(_("Choose owner or member."), field="role")
        services.member_role_change(
            organisation=organisation, by=request.user, membership_id=member_id, role=form.cleaned_data["role"]
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Role changed."))
    return redirect("web:organisation")


@require_POST
@owner_required
def member_remove(request, member_id: int, *, organisation):
    try:
        services.member_remove(organisation=organisation, by=request.user, membership_id=member_id)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, _("Member removed; their API keys are revoked."))
    return redirect("web:organisation")


@require_POST
@owner_required
def spend_cap(request, *, organisation):
    form = SpendCapForm(request.POST)
    if form.is_valid():
        services.organisation_spend_cap_set(
            organisation=organisation, by=request.user, monthly_spend_cap=form.cleaned_data["monthly_spend_cap"]
        )
        messages.success(request, _("Monthly spend cap saved."))
        return redirect("web:organisation")
    return _page(request, organisation, cap_form=form, status=400)
