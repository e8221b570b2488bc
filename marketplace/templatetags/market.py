"""Template filters for the one page format (see ``marketplace/web/formatting.py``).

``{% load market %}`` then ``{{ amount|cny }}``, ``{{ price|cny_rate }}``, ``{{ moment|cst }}``,
``{{ region|local_name }}``, ``{{ status|status_name }}``, ``{{ match|buyer_rate|cny_rate }}``.
"""

from __future__ import annotations

from django import template

from marketplace import money
from marketplace.web import formatting

register = template.Library()

register.filter("cny", formatting.cny)
register.filter("cny_rate", formatting.cny_per_gpu_hour)
register.filter("cst", formatting.cst)
register.filter("local_name", formatting.local_name)
register.filter("status_name", formatting.status_name)
register.filter("latency_class_name", formatting.latency_class_name)


@register.simple_tag
def time_zone_label() -> str:
    """The pages' time-zone label, for headings and form labels ("Start by (CST)")."""
    return formatting.time_zone_label()


@register.filter
def buyer_rate(match) -> object:
    """What the buyer of ``match`` pays per GPU-hour: its price less its subsidy (``money.buyer_rate``)."""
    return money.buyer_rate(
        price_per_gpu_hour=match.price_per_gpu_hour, subsidy_per_gpu_hour=match.subsidy_per_gpu_hour
    )
