"""The admin match monitor (staff only): a live feed of matches and matching runs polled by htmx,
charts fed by a JSON endpoint, and the requests the latest rounds could not serve."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from marketplace import selectors
from marketplace.web.access import staff_required

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
    return JsonResponse(selectors.monitor_charts().as_dict())
