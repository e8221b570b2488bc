"""A buyer's pages: its requests with their matches and explanations (polled for changes), the
request form with a live quote beside it (the same selector as ``POST /api/v1/quotes/``), the
cancel confirmation, and the statements page (any organisation: what it pays or earns)."""

from __future__ import annotations

import re
from datetime import date

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from marketplace import bounds, selectors, services
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import Organisation
from marketplace.statement_csv import statement_csv_response
from marketplace.web.access import member_required, organisation_required
from marketplace.web.forms import RequestForm

buyer_required = organisation_required(Organisation.Kind.BUYER)


def _requests_context(request, organisation) -> dict:
    """The requests list's context from the query string (status, sort, page), as the dashboard
    and its polled partial both render it."""
    listing = selectors.buyer_requests_page(
        buyer=organisation,
        status=request.GET.get("status", ""),
        sort=request.GET.get("sort", "newest"),
        page=request.GET.get("page", 1),
    )
    query = {"status": listing.status, "sort": listing.sort, "page": listing.page.number}
    return {"listing": listing, "query": query, "totals": selectors.buyer_totals(buyer=organisation)}


def _status_choices() -> list[tuple[str, str]]:
    return [
        ("", gettext("All")),
        ("open", gettext("Open")),
        ("partially_matched", gettext("Partly matched")),
        ("matched", gettext("Matched")),
        ("cancelled", gettext("Cancelled")),
        ("expired", gettext("Expired")),
    ]


def _sort_choices() -> list[tuple[str, str]]:
    return [
        ("newest", gettext("Newest first")),
        ("oldest", gettext("Oldest first")),
        ("price", gettext("Highest price cap first")),
    ]


@buyer_required
def dashboard(request, *, organisation):
    context = {
        "organisation": organisation,
        "vouchers": selectors.vouchers_of(organisation),
        "status_choices": _status_choices(),
        "sort_choices": _sort_choices(),
        **_requests_context(request, organisation),
    }
    return render(request, "web/buyer/dashboard.html", context)


@require_GET
@buyer_required
def live(request, *, organisation):
    """The requests list again, for the dashboard's polling: 204 (nothing to swap) while its
    fingerprint is the one the page already has."""
    if request.GET.get("stamp") == selectors.buyer_fingerprint(buyer=organisation):
        return HttpResponse(status=204)
    return render(request, "web/buyer/_requests.html", _requests_context(request, organisation))


@buyer_required
def request_new(request, *, organisation):
    form = RequestForm(request.POST or None, vouchers=selectors.usable_vouchers(buyer=organisation))
    if request.method == "POST" and form.is_valid():
        try:
            buyer_request = services.request_submit(buyer=organisation, **form.terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(
                request,
                gettext("Request #%(id)s submitted; the engine is placing it.") % {"id": buyer_request.pk},
            )
            return redirect("web:buyer")
    status = 400 if form.errors else 200
    return render(request, "web/buyer/request_form.html", {"form": form}, status=status)


@require_POST
@buyer_required
def quote(request, *, organisation):
    """The quote panel for the form's current values (htmx swaps it in as fields change); field
    errors travel out-of-band to their places beside the fields. A field still empty is not an
    error yet (nothing has been typed there): the panel says what to fill in instead."""
    form = RequestForm(request.POST, vouchers=selectors.usable_vouchers(buyer=organisation))
    context: dict = {"form": form, "quote": None, "summary": None, "missing": [], "shown_errors": {}}
    if form.is_valid():
        terms = form.terms()
        try:
            quote = selectors.request_quote(buyer=organisation, **terms)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            summary = selectors.quote_summary(quote, duration_hours=terms["duration_hours"])
            context.update(
                terms=terms,
                quote=quote,
                summary=summary,
                lines=list(zip(quote.assignments, summary.lines, strict=True)),
                frontier=list(zip(quote.frontier, summary.frontier, strict=True)),
                regions={region.code: region for region in selectors.region_list()},
            )
    for name, errors in form.errors.as_data().items():
        shown = [message for error in errors if error.code != "required" for message in error.messages]
        if len(shown) < len(errors) and name in form.fields:
            context["missing"].append(str(form.fields[name].label))
        context["shown_errors"][name] = shown
    return render(request, "web/buyer/_quote.html", context)


@buyer_required
def cancel(request, request_id: int, *, organisation):
    """GET: what cancelling would do, and a button to do it; POST: cancel (``request_cancel``)."""
    row = selectors.request_to_cancel(buyer=organisation, request_id=request_id)
    if row is None:
        raise Http404
    if request.method != "POST":
        return render(request, "web/buyer/cancel.html", {"row": row})
    try:
        services.request_cancel(request_id=request_id, buyer=organisation)
    except DomainError as error:
        messages.error(request, gettext("Request #%(id)s: %(error)s") % {"id": request_id, "error": error.message})
    else:
        messages.success(
            request, gettext("Request #%(id)s cancelled; its reserved GPUs are free again.") % {"id": request_id}
        )
    return redirect("web:buyer")


# --- statements (buyers and providers) ----------------------------------------------------------


def _month(request) -> tuple[date, str]:
    """The ``?month=YYYY-MM`` asked for (this month when absent or malformed) and an error to show."""
    text = request.GET.get("month", "")
    this_month = market_now().date().replace(day=1)
    if not text:
        return this_month, ""
    if re.fullmatch(bounds.STATEMENT_MONTH.pattern or "", text):
        return date.fromisoformat(f"{text}-01"), ""
    return this_month, gettext("Choose a month as YYYY-MM, such as 2026-12.")


@member_required
def statements(request, *, organisation):
    """The organisation's statement for a month: a buyer's is what it pays, a provider's what it earns."""
    month, error = _month(request)
    statement = selectors.statement_for(organisation, month)
    context = {"organisation": organisation, "statement": statement, "month": month, "month_error": error}
    return render(request, "web/statements.html", context, status=400 if error else 200)


@member_required
def statements_csv(request, *, organisation):
    """The month's statement as CSV: the API's file (``GET /api/v1/statements/csv/``) exactly."""
    month, error = _month(request)
    if error:
        return HttpResponse(error, status=400, content_type="text/plain; charset=utf-8")
    return statement_csv_response(selectors.statement_for(organisation, month))
