"""The admin match monitor (staff only): a live feed of matches and matching runs polled by htmx,
charts fed by a JSON endpoint, and the requests the latest rounds could not serve.

Every figure called a price is what the buyer pays per GPU-hour (price − subsidy); the engine's
latency-weighted ``cost_per_gpu_hour`` is shown apart, named as the engine's score. Times are in
China Standard Time: the page prints them with ``|cst``; the charts' JSON keeps UTC instants
(``times``) and monitor.js draws them in Asia/Shanghai under the page's translated axis label."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from marketplace import selectors
from marketplace.models import Region
from marketplace.web.access import staff_required
from marketplace.web.formatting import local_name

#: How often the page polls, in seconds: the live feed (matches, runs, totals) and the rest.
LIVE_POLL_SECONDS = 1
CHARTS_POLL_SECONDS = 5


@staff_required
def page(request):
    context = {
        "live": selectors.monitor_live(),
        "unserved": selectors.unserved_requests(),
        "left_out": selectors.rows_left_out(),
        "programs": selectors.voucher_spend(user=request.user, provider=None),
        "clearing_prices": selectors.latest_clearing_prices(),
        "live_poll": LIVE_POLL_SECONDS,
        "charts_poll": CHARTS_POLL_SECONDS,
    }
    return render(request, "web/monitor/page.html", context)


@staff_required
def live(request):
    context = {"live": selectors.monitor_live(), "live_poll": LIVE_POLL_SECONDS}
    return render(request, "web/monitor/_live.html", context)


@staff_required
def unserved(request):
    context = {"unserved": selectors.unserved_requests(), "left_out": selectors.rows_left_out()}
    return render(request, "web/monitor/_unserved.html", context)


@staff_required
def charts(request):
    """The charts' data, with each region's name in the reader's language (``region_names``)."""
    data = selectors.monitor_charts().as_dict()
    data["region_names"] = {code: local_name(selectors.reference_by_code(Region, code)) for code in data["regions"]}
    return JsonResponse(data)
