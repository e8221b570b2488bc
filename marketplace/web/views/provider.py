"""A provider's pages: its listings with utilisation and earnings, matches on its capacity, the
forms to create, edit and withdraw listings, report failed nodes, and its promotions. Every write
goes through the same services as the API; an act that moves buyers' matches (withdraw, a failure
report) is confirmed first on a page that says how many live matches it will move. A promotion
can be paused and resumed."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from marketplace import selectors, services
from marketplace.errors import DomainError, NotFound
from marketplace.models import Listing, Organisation
from marketplace.web.access import organisation_required
from marketplace.web.formatting import local_name
from marketplace.web.forms import FailedNodesForm, ListingEditForm, ListingForm, PromotionForm

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
def guidance(request, listing_id: int, *, organisation):
    """The Guidance panel of one idle listing (loaded by htmx when the provider opens it, so the
    dashboard itself stays a constant number of queries): why its GPUs are idle and the highest
    price at which the engine would fill them now (``listing_guidance``: exact re-solves)."""
    found = selectors.listing_guidance(listing_id=listing_id, provider=organisation)
    if found is None:
        raise Http404
    reasons = selectors.idle_reasons(found, name=local_name)
    return render(request, "web/provider/_guidance.html", {"guidance": found, "reasons": reasons})


@provider_required
def listing_new(request, *, organisation):
    form = ListingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            listing = services.listing_create(provider=organisation, **form.terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(
                request,
                _("Listing #%(id)s is on the market: %(gpus)s GPUs.") % {"id": listing.pk, "gpus": listing.gpu_count},
            )
            return redirect("web:provider")
    return _form_page(request, form, listing=None)


@provider_required
def listing_edit(request, listing_id: int, *, organisation):
    listing = _own_listing(organisation, listing_id)
    form = ListingEditForm(request.POST or None, listing=listing)
    if request.method == "POST" and form.is_valid():
        try:
            services.listing_update(listing_id=listing.pk, provider=organisation, changes=form.changes())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, _("Listing #%(id)s updated.") % {"id": listing.pk})
            return redirect("web:provider")
    return _form_page(request, form, listing=listing)


@require_http_methods(["GET", "POST"])
@provider_required
def withdraw(request, listing_id: int, *, organisation):
    """GET: what withdrawing will do (its live matches move to other capacity); POST: withdraw."""
    if request.method == "GET":
        listing = _own_listing(organisation, listing_id)
        live = len(selectors.live_nodes_by_listing([listing.pk]).get(listing.pk, []))
        return render(request, "web/provider/withdraw_confirm.html", {"listing": listing, "live_matches": live})
    try:
        services.listing_withdraw(listing_id=listing_id, provider=organisation)
    except DomainError as error:
        messages.error(request, _("Listing #%(id)s: %(error)s") % {"id": listing_id, "error": error.message})
    else:
        messages.success(
            request, _("Listing #%(id)s withdrawn; its live matches fail over to other capacity.") % {"id": listing_id}
        )
    return redirect("web:provider")


@require_http_methods(["GET", "POST"])
@provider_required
def failure_report(request, listing_id: int, *, organisation):
    """Report failed nodes of a listing (``listing_nodes_fail``, as the API's fail-nodes). The first
    POST shows what will happen (how many live matches on those nodes fail over); the report is
    made only by the POST that carries ``confirm``."""
    listing = _own_listing(organisation, listing_id)
    form = FailedNodesForm(request.POST or None, listing=listing)
    context = {"listing": listing, "form": form, "confirming": False}
    if request.method == "POST" and form.is_valid():
        nodes = form.cleaned_data["nodes"]
        if request.POST.get("confirm") != "yes":
            live = selectors.live_nodes_by_listing([listing.pk]).get(listing.pk, [])
            context.update(confirming=True, nodes=nodes, moving=sum(1 for _, on in live if set(on) & set(nodes)))
            return render(request, "web/provider/failure_report.html", context)
        try:
            services.listing_nodes_fail(listing_id=listing.pk, provider=organisation, nodes=nodes)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(
                request,
                _("Nodes %(nodes)s of listing #%(id)s reported failed; their matches fail over to other capacity.")
                % {"nodes": ", ".join(map(str, nodes)), "id": listing.pk},
            )
            return redirect("web:provider")
    status = 400 if form.errors else 200
    return render(request, "web/provider/failure_report.html", context, status=status)


@provider_required
def promotions(request, *, organisation):
    """The provider's promotions with their spend, and a form for a new one (``voucher_program_create``
    with the provider as sponsor, as the API's voucher-programs)."""
    form = PromotionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            program = services.voucher_program_create(sponsor_provider=organisation, **form.terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(request, _("Promotion “%(name)s” created.") % {"name": program.name})
            return redirect("web:promotions")
    context = {
        "organisation": organisation,
        "promotions": selectors.voucher_spend(user=request.user, provider=organisation),
        "form": form,
    }
    return render(request, "web/provider/promotions.html", context, status=400 if form.errors else 200)


@require_POST
@provider_required
def promotion_pause(request, program_id: int, *, organisation):
    """Pause (``paused=true``) or resume (``paused=false``) one of the provider's promotions, through
    ``voucher_program_update`` as the API's PATCH; another's promotion does not exist (404)."""
    paused = {"true": True, "false": False}.get(request.POST.get("paused", ""))
    if paused is None:
        messages.error(request, _("Say whether to pause or resume the promotion."))
        return redirect("web:promotions")
    try:
        program = services.voucher_program_update(
            program_id=program_id, sponsor_provider=organisation, changes={"paused": paused}
        )
    except NotFound:
        raise Http404 from None
    except DomainError as error:
        messages.error(request, error.message)
    else:
        done = _("Promotion “%(name)s” paused: it subsidises no new match until you resume it.")
        if not paused:
            done = _("Promotion “%(name)s” resumed.")
        messages.success(request, done % {"name": program.name})
    return redirect("web:promotions")


def _own_listing(organisation, listing_id: int) -> Listing:
    listing = selectors.provider_listing(provider=organisation, listing_id=listing_id)
    if listing is None:
        raise Http404
    return listing


def _form_page(request, form, *, listing):
    status = 400 if form.errors else 200
    return render(request, "web/provider/listing_form.html", {"form": form, "listing": listing}, status=status)
