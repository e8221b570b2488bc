"""A buyer's pages: its requests with their matches and explanations (polled for changes), the
request form with a live quote beside it (the same selector as ``POST /api/v1/quotes/``), the
"Serve a model" page (the inference form's live quote and its frontier by GPU model), the
cancel confirmation, and the statements page (any organisation: what it pays or earns)."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from marketplace import bounds, selectors, services
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import Organisation
from marketplace.statement_csv import statement_csv_response
from marketplace.web.access import member_required, organisation_required
from marketplace.web.formatting import local_name
from marketplace.web.forms import CUSTOM_BOUND, InferenceForm, RequestForm

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
    """The GPU form. A GET's query string pre-fills it (by field name, as the form posts them): the
    "Serve a model" page sends its chosen alternative here."""
    initial = {name: value for name, value in request.GET.items() if name in RequestForm.base_fields}
    form = RequestForm(request.POST or None, initial=initial, vouchers=selectors.usable_vouchers(buyer=organisation))
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
    _shown_errors(form, context)
    return render(request, "web/buyer/_quote.html", context)


def _shown_errors(form, context: dict) -> None:
    """Each field's errors for the out-of-band slots beside the fields, leaving out "required":
    a field still empty is not an error yet, it is listed in ``missing`` (by label) instead."""
    for name, errors in form.errors.as_data().items():
        shown = [message for error in errors if error.code != "required" for message in error.messages]
        if len(shown) < len(errors) and name in form.fields:
            context["missing"].append(str(form.fields[name].label))
        context["shown_errors"][name] = shown


@buyer_required
def serve(request, *, organisation):
    """The inference form with its live quote; a POST submits it as an inference request
    (``services.request_submit_inference``, as ``POST /api/v1/requests/`` in the inference form)
    and goes to the request on the buyer's page. A rule broken lands beside the field it names,
    one that names no field here (the spend cap, the quota) above the form."""
    posted = request.POST if request.method == "POST" else None  # an empty POST is a form left empty
    form = InferenceForm(posted, vouchers=selectors.usable_vouchers(buyer=organisation))
    if posted is not None and form.is_valid():
        try:
            buyer_request = services.request_submit_inference(buyer=organisation, **form.submit_terms())
        except DomainError as error:
            form.add_domain_error(error)
        else:
            messages.success(
                request,
                gettext("Request #%(id)s submitted; the engine is placing it.") % {"id": buyer_request.pk},
            )
            return redirect(f"{reverse('web:buyer')}#request-{buyer_request.pk}")
    status = 400 if form.errors else 200
    return render(request, "web/buyer/serve.html", {"form": form}, status=status)


@require_POST
@buyer_required
def serve_quote(request, *, organisation):
    """The inference quote panel for the form's current values (``selectors.inference_quote_for``,
    as ``POST /api/v1/quotes/`` in the inference form): the chosen placement, the frontier by GPU
    model as a table and as the chart's points. A rule broken lands beside the field it names."""
    form = InferenceForm(request.POST, vouchers=selectors.usable_vouchers(buyer=organisation))
    context: dict = {"form": form, "quote": None, "missing": [], "shown_errors": {}}
    if form.is_valid():
        terms = form.terms()
        try:
            quote = selectors.inference_quote_for(buyer=organisation, **terms)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            context.update(_serve_context(quote, terms))
    _shown_errors(form, context)
    return render(request, "web/buyer/_serve_quote.html", context)


def _serve_context(quote, terms: dict) -> dict:
    """The panel's figures: what the buyer pays for the chosen placement, the frontier rows by GPU
    model (named in the reader's language), the chart's points and the GPU-form request that
    places the chosen alternative today."""
    models = {row.code: row for row in selectors.gpu_model_list()}
    regions = {region.code: region for region in selectors.region_list()}
    best = quote.best
    frontier = [
        (models[code], point, [local_name(regions[r]) for r in sorted({a.region for a in point.assignments})])
        for code, point in sorted(quote.frontier.items())
    ]
    points = [
        {
            "label": local_name(model),
            "ttft_ms": round(point.ttft_ms, 1),
            "price": float(point.price_per_million_tokens),
            "chosen": best is not None and point.alternative == best.alternative,
        }
        for model, point, _ in frontier
        if point.ttft_ms is not None and point.price_per_million_tokens is not None
    ]
    context: dict = {
        "quote": quote,
        "best": best,
        "terms": terms,
        "frontier": frontier,
        "points": points,
        "points_json": json.dumps(points),
        "regions": regions,
        "best_model": None,
        "lines": [],
        "pays": None,
        "gpu_form_url": "",
    }
    if best is not None:
        duration = terms["duration_hours"]
        context.update(
            best_model=models[best.alternative.gpu_model],
            lines=[(a, selectors.buyer_pays_of((a,), duration_hours=duration)) for a in best.assignments],
            pays=selectors.buyer_pays_of(best.assignments, duration_hours=duration),
            gpu_form_url=_gpu_form_url(best.alternative, terms),
        )
    return context


def _gpu_form_url(alternative, terms: dict) -> str:
    """/buyer/requests/new/ pre-filled with ``alternative`` as a GPU-form request: its GPU model,
    GPUs per replica and replicas, the origin, a custom RTT bound that keeps the TTFT (the TTFT
    target less prefill and queueing margin, rounded down to the form's tenth of a ms and held
    within its bounds), the cap per GPU-hour the cap per million tokens makes, and the duration.
    Empty when the bound or the cap falls outside what the GPU form takes."""
    rtt_bound = min(Decimal(str(alternative.rtt_bound_ms)), bounds.MAX_RTT_MS.maximum)
    rtt_bound = rtt_bound.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    cap = alternative.max_price_per_gpu_hour
    if rtt_bound < bounds.MAX_RTT_MS.minimum or not bounds.PRICE.minimum <= cap <= bounds.PRICE.maximum:
        return ""
    query = {
        "gpu_model": alternative.gpu_model,
        "gpus_per_replica": alternative.gpus_per_replica,
        "replicas": min(alternative.replicas_needed, bounds.REPLICAS.maximum),
        "origin": terms["origin"].code,
        "latency_class": CUSTOM_BOUND,
        "max_rtt_ms": rtt_bound,
        "max_price_per_gpu_hour": cap,
        "duration_hours": terms["duration_hours"],
    }
    if terms["voucher_code"]:
        query["voucher_code"] = terms["voucher_code"]
    return f"{reverse('web:request-new')}?{urlencode(query)}"


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
