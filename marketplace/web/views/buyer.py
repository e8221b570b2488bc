"""A buyer's pages: its requests with their matches and explanations, and the request form with a
live quote beside it (the same selector as ``POST /api/v1/quotes/``)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from marketplace import selectors, services
from marketplace.errors import DomainError
from marketplace.models import Organisation
from marketplace.web.access import organisation_required
from marketplace.web.forms import RequestForm

buyer_required = organisation_required(Organisation.Kind.BUYER)


@buyer_required
def dashboard(request, *, organisation):
    context = {
        "organisation": organisation,
        "dashboard": selectors.buyer_dashboard(buyer=organisation),
        "vouchers": selectors.vouchers_of(organisation),
    }
    return render(request, "web/buyer/dashboard.html", context)


@buyer_required
def request_new(request, *, organisation):
    form = RequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            buyer_request = services.request_submit(buyer=organisation, **form.terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, f"Request #{buyer_request.pk} submitted; the engine is placing it.")
            return redirect("web:buyer")
    status = 400 if form.errors else 200
    return render(request, "web/buyer/request_form.html", {"form": form}, status=status)


@require_POST
@buyer_required
def quote(request, *, organisation):
    """The quote panel for the form's current values (htmx swaps it in as fields change); field
    errors travel out-of-band to their places beside the fields."""
    form = RequestForm(request.POST)
    context = {"form": form, "quote": None, "summary": None}
    if form.is_valid():
        terms = form.terms()
        try:
            context["quote"] = selectors.request_quote(buyer=organisation, **terms)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            context["summary"] = selectors.quote_summary(context["quote"], duration_hours=terms["duration_hours"])
    return render(request, "web/buyer/_quote.html", context)


@require_POST
@buyer_required
def cancel(request, request_id: int, *, organisation):
    try:
        services.request_cancel(request_id=request_id, buyer=organisation)
    except DomainError as error:
        messages.error(request, f"Request #{request_id}: {error.message}")
    else:
        messages.success(request, f"Request #{request_id} cancelled; its reserved GPUs are free again.")
    return redirect("web:buyer")
