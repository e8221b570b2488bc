"""Words for the buyer's pages: latency bounds, statuses, and why a request is not placed yet.

``{% load buyer_pages %}`` then ``{{ request|latency_bound }}`` ("≤ 31 ms" for a custom bound,
"Interactive (≤ 30 ms)" for a class), ``{{ "interactive"|latency_name }}``, ``{{ status|status_name }}``,
``{{ code|region_named:regions }}`` (a region code in an engine sentence, by its name),
``{% unserved_advice row %}`` (what blocks the request and what would help), ``{% quote_blocked
reason terms regions %}`` (the same for a quote's frontier point).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django import template
from django.utils.formats import number_format
from django.utils.text import capfirst
from django.utils.translation import gettext

from marketplace.models import BuyerRequest
from marketplace.selectors.buyer_pages import Unserved, unserved_of
from marketplace.web import formatting
from marketplace.web.forms import latency_choice_label
from matching.latency import LatencyClass

register = template.Library()


def _ms(value) -> str:
    return f"{Decimal(str(value)).normalize():f}"


@register.filter
def latency_name(value) -> str:
    """A latency class's name in the reader's language, capitalised as in the request form's menu."""
    return capfirst(formatting.latency_class_name(value))


@register.filter
def latency_bound(request) -> str:
    """A request's latency bound: "≤ 31 ms" for a custom bound, else its class with the class bound."""
    if request.max_rtt_ms is not None:
        return gettext("≤ %(ms)s ms") % {"ms": _ms(request.max_rtt_ms)}
    return latency_choice_label(LatencyClass(request.latency_class))


register.filter("status_name", formatting.status_name)


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


@dataclass(frozen=True)
class Asked:
    """What a request (or a quoted one) asked for, as the advice words need it."""

    gpu: str
    cap: Decimal
    gpus_per_replica: int
    duration_hours: int
    start_by: datetime


def advice_for(unserved: Unserved, asked: Asked) -> tuple[str, str]:
    """(what blocks it, what would help), in the reader's language."""
    gpu = asked.gpu
    if unserved.kind == "none_listed":
        return (
            gettext("No %(gpu)s is listed on the market right now.") % {"gpu": gpu},
            gettext("Choose another GPU model, or keep the request open: it is placed as soon as one is listed."),
        )
    if unserved.kind == "node_size":
        return (
            gettext("No listing has nodes of %(n)s GPUs.") % {"n": asked.gpus_per_replica},
            gettext("Ask for fewer GPUs per replica and more replicas."),
        )
    if unserved.kind == "too_far" and unserved.relax_to is not None:
        nearest = formatting.local_name(unserved.nearest) if unserved.nearest else "—"
        what = gettext("No %(gpu)s is within your latency bound; the nearest is %(region)s at %(ms)s ms.") % {
            "gpu": gpu,
            "region": nearest,
            "ms": _ms(unserved.nearest_rtt_ms),
        }
        return what, gettext("Relax to %(latency)s to use it.") % {"latency": latency_choice_label(unserved.relax_to)}
    if unserved.kind == "price":
        what = gettext("Every %(gpu)s within your latency bound costs more than your cap of %(cap)s.") % {
            "gpu": gpu,
            "cap": formatting.cny_per_gpu_hour(asked.cap),
        }
        return what, gettext("Raise the cap to %(price)s.") % {"price": formatting.cny_per_gpu_hour(unserved.cheapest)}
    if unserved.kind == "reliability":
        return (
            gettext("No listing within your bound and cap is as reliable as you asked."),
            gettext("Lower or clear the least listing reliability."),
        )
    if unserved.kind == "window":
        what = gettext("Nothing within your bound and cap is free for %(hours)s h starting by %(start)s.") % {
            "hours": asked.duration_hours,
            "start": formatting.cst(asked.start_by),
        }
        return what, gettext("Start later or ask for fewer hours.")
    if unserved.kind == "node_free":
        return (
            gettext("No node within your bound and cap has %(n)s free GPUs now.") % {"n": asked.gpus_per_replica},
            gettext("Ask for fewer GPUs per replica, or wait: GPUs free up as matches end."),
        )
    if unserved.kind == "capacity":
        return (
            gettext("The capacity that fits was taken by other requests in the latest round."),
            gettext("Raise the cap, or relax to a wider latency class, to reach more capacity."),
        )
    return gettext("The engine could not place it: %(reason)s") % {"reason": unserved.reason}, ""


def _asked_by(request) -> Asked:
    return Asked(
        gpu=formatting.local_name(request.gpu_model),
        cap=request.max_price_per_gpu_hour,
        gpus_per_replica=request.gpus_per_replica,
        duration_hours=request.duration_hours,
        start_by=request.start_by,
    )


@register.simple_tag
def unserved_advice(row) -> dict[str, str]:
    """``{"head", "what", "help"}``: why the latest round left replicas of ``row`` (a
    ``selectors.buyer_pages.RequestRow``) unplaced, and what the buyer could change."""
    request = row.request
    if request.kind == BuyerRequest.Kind.INFERENCE:
        # Its target is tokens/s, its cap per million tokens: the GPU form's advice (a cap per
        # GPU-hour, a latency class) is not its terms; the round's own words say what blocked it.
        left = row.unserved.tokens_per_second
        head = gettext("Part of its output tokens/s is not placed yet.")
        if left is not None:
            head = gettext("%(n)s of %(total)s output tokens/s are not placed yet.") % {
                "n": number_format(round(left), 0, force_grouping=True),
                "total": number_format(request.inference.output_tokens_per_second, 0, force_grouping=True),
            }
        return {"head": head, "what": row.unserved.reason, "help": ""}
    what, helps = advice_for(row.unserved, _asked_by(row.request))
    head = gettext("%(n)s of %(total)s replicas are not placed yet.") % {
        "n": row.unserved.replicas,
        "total": row.request.replicas,
    }
    return {"head": head, "what": what, "help": helps}


@register.simple_tag
def quote_blocked(reason: str, detail: dict | None, terms: dict, regions) -> str:
    """A quote's blocked reason (the engine's words, and ``detail`` its data) as a sentence with what
    would help; ``terms`` are the quoted request's (``RequestForm.terms()``), ``regions`` every
    region by code."""
    if not reason:
        return gettext("nothing placeable")
    asked = Asked(
        gpu=formatting.local_name(terms["gpu_model"]),
        cap=terms["max_price_per_gpu_hour"],
        gpus_per_replica=terms["gpus_per_replica"],
        duration_hours=terms["duration_hours"],
        start_by=terms["start_by"],
    )
    what, helps = advice_for(unserved_of(reason, detail, replicas=0, regions=regions or {}), asked)
    return f"{what} {helps}".strip()
