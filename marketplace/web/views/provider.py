"""A provider's pages: its listings with utilisation and earnings, matches on its capacity, and
the forms to create, edit and withdraw listings (through the listing services)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from marketplace import selectors, services
from marketplace.errors import DomainError
from marketplace.models import Organisation
from marketplace.web.access import organisation_required
from marketplace.web.forms import ListingEditForm, ListingForm

provider_required = organisation_required(Organisation.Kind.PROVIDER)


@provider_required
def dashboard(request, *, organisation):
    context = {
        "organisation": organisation,
        "dashboard": selectors.provider_dashboard(provider=organisation),
        "promotions": selectors.voucher_spend(user=request.user, provider=organisation),
    }
    return render(request, "web/provider/dashboard.html", context)


@provider_required
def listing_new(request, *, organisation):
    form = ListingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            listing = services.listing_create(provider=organisation, **form.terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, f"Listing #{listing.pk} is on the market: {listing.gpu_count} GPUs.")
            return redirect("web:provider")
    return _form_page(request, form, listing=None)


@provider_required
def listing_edit(request, listing_id: int, *, organisation):
    listing = selectors.provider_listing(provider=organisation, listing_id=listing_id)
    if listing is None:
        raise Http404
    form = ListingEditForm(request.POST or None, listing=listing)
    if request.method == "POST" and form.is_valid():
        try:
            services.listing_update(listing_id=listing.pk, provider=organisation, changes=form.changes())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, f"Listing #{listing.pk} updated.")
            return redirect("web:provider")
    return _form_page(request, form, listing=listing)


@require_POST
@provider_required
def withdraw(request, listing_id: int, *, organisation):
    try:
        services.listing_withdraw(listing_id=listing_id, provider=organisation)
    except DomainError as error:
        messages.error(request, f"Listing #{listing_id}: {error.message}")
    else:
        messages.success(request, f"Listing #{listing_id} withdrawn; its live matches fail over to other capacity.")
    return redirect("web:provider")


def _form_page(request, form, *, listing):
    status = 400 if form.errors else 200
    return render(request, "web/provider/listing_form.html", {"form": form, "listing": listing}, status=status)
