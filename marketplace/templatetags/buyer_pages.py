"""Words for the buyer's pages: latency bounds, statuses, and why a request is not placed yet.

``{% load buyer_pages %}`` then ``{{ request|latency_bound }}`` ("≤ 31 ms" for a custom bound,
"Interactive (≤ 30 ms)" for a class), ``{{ "interactive"|latency_name }}``, ``{{ status|status_name }}``,
``{{ code|region_named:regions }}`` (a region code in an engine sentence, by its name),
``{% unserved_advice row %}`` (what blocks the request and what would help).
"""

from __future__ import annotations

import re
from decimal import Decimal

from django import template
from django.utils.translation import gettext, pgettext

from marketplace.web import formatting
from marketplace.web.forms import LATENCY_CLASS_NAMES, latency_choice_label
from matching.latency import LatencyClass

register = template.Library()


def _ms(value) -> str:
    return f"{Decimal(str(value)).normalize():f}"


@register.filter
def latency_name(value) -> str:
    """A latency class's name in the reader's language."""
    try:
        return str(LATENCY_CLASS_NAMES[LatencyClass(value)])
    except ValueError:
        return str(value)


@register.filter
def latency_bound(request) -> str:
    """A request's latency bound: "≤ 31 ms" for a custom bound, else its class with the class bound."""
    if request.max_rtt_ms is not None:
        return gettext("≤ %(ms)s ms") % {"ms": _ms(request.max_rtt_ms)}
    return latency_choice_label(LatencyClass(request.latency_class))


@register.filter
def status_name(value) -> str:
    """A request's or match's status in the reader's language."""
    names = {
        "open": pgettext("status", "open"),
        "partially_matched": pgettext("status", "partly matched"),
        "matched": pgettext("status", "matched"),
        "cancelled": pgettext("status", "cancelled"),
        "expired": pgettext("status", "expired"),
        "reserved": pgettext("status", "reserved"),
        "running": pgettext("status", "running"),
        "completed": pgettext("status", "completed"),
        "failed": pgettext("status", "failed"),
        "active": pgettext("status", "active"),
        "revoked": pgettext("status", "revoked"),
    }
    return names.get(str(value), str(value))


@register.filter
def region_named(code, regions) -> str:
    """The region of ``code`` by its name in the reader's language (the code if unknown)."""
    region = (regions or {}).get(code)
    return formatting.local_name(region) if region is not None else str(code)


@register.filter
def names_in(sentence, regions) -> str:
    """An engine sentence with each region code in it replaced by the region's name."""
    if not regions:
        return str(sentence)
    codes = sorted(regions, key=len, reverse=True)
    pattern = re.compile(r"(?<![-\w])(" + "|".join(re.escape(code) for code in codes) + r")(?![-\w])")
    return pattern.sub(lambda found: formatting.local_name(regions[found[1]]), str(sentence))


@register.simple_tag
def unserved_advice(row) -> dict[str, str]:
    """``{"what": ..., "help": ...}``: why the latest round left replicas of ``row`` (a
    ``selectors.buyer_pages.RequestRow``) unplaced, and what the buyer could change."""
    unserved, request = row.unserved, row.request
    gpu = formatting.local_name(request.gpu_model)
    what, helps = "", ""
    if unserved.kind == "none_listed":
        what = gettext("No %(gpu)s is listed on the market right now.") % {"gpu": gpu}
        helps = gettext("Choose another GPU model, or keep the request open: it is placed as soon as one is listed.")
    elif unserved.kind == "node_size":
        what = gettext("No listing has nodes of %(n)s GPUs.") % {"n": request.gpus_per_replica}
        helps = gettext("Ask for fewer GPUs per replica and more replicas.")
    elif unserved.kind == "too_far":
        nearest = formatting.local_name(unserved.nearest) if unserved.nearest else "—"
        what = gettext("No %(gpu)s is within your latency bound; the nearest is %(region)s at %(ms)s ms.") % {
            "gpu": gpu,
            "region": nearest,
            "ms": _ms(unserved.nearest_rtt_ms),
        }
        helps = gettext("Relax to %(latency)s to use it.") % {"latency": latency_choice_label(unserved.relax_to)}
    elif unserved.kind == "price":
        what = gettext("Every %(gpu)s within your latency bound costs more than your cap of %(cap)s.") % {
            "gpu": gpu,
            "cap": formatting.cny_per_gpu_hour(request.max_price_per_gpu_hour),
        }
        helps = gettext("Raise the cap to %(price)s.") % {"price": formatting.cny_per_gpu_hour(unserved.cheapest)}
    elif unserved.kind == "reliability":
        what = gettext("No listing within your bound and cap is as reliable as you asked.")
        helps = gettext("Lower or clear the least listing reliability.")
    elif unserved.kind == "window":
        what = gettext("Nothing within your bound and cap is free for %(hours)s h starting by %(start)s.") % {
            "hours": request.duration_hours,
            "start": formatting.cst(request.start_by),
        }
        helps = gettext("Start later or ask for fewer hours.")
    elif unserved.kind == "node_free":
        what = gettext("No node within your bound and cap has %(n)s free GPUs now.") % {"n": request.gpus_per_replica}
        helps = gettext("Ask for fewer GPUs per replica, or wait: GPUs free up as matches end.")
    elif unserved.kind == "capacity":
        what = gettext("The capacity that fits was taken by other requests in the latest round.")
        helps = gettext("Raise the cap, or relax to a wider latency class, to reach more capacity.")
    else:
        what = gettext("The engine could not place it: %(reason)s") % {"reason": unserved.reason}
    head = gettext("%(n)s of %(total)s replicas are not placed yet.") % {
        "n": unserved.replicas,
        "total": request.replicas,
    }
    return {"head": head, "what": what, "help": helps}
