"""One format for money, times and names on every page (issue 18).

- Money: ``¥1,234.56``: two decimals, rounded half up, thousands separators, the yuan sign.
- A price per GPU-hour: ``¥4.80/GPU·h`` (``¥4.80/卡·时``).
- Times: China Standard Time with its label, ``2026-12-04 17:00 CST`` (``北京时间``).
- Names: a region's or GPU model's name in the reader's language (``name_zh`` for Chinese when
  the reference data has one), never its code.

Pages use these through the template filters in ``marketplace/templatetags/market.py``; views and
forms call them directly.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext, pgettext_lazy

from marketplace.money import yuan_text
from marketplace.web.page_time import page_time_zone
from matching.latency import LatencyClass

EMPTY = "—"


def cny(value: Any) -> str:
    """``¥1,234.56`` for an amount in yuan; ``—`` for none; a minus sign before the ¥."""
    if value is None or value == "":
        return EMPTY
    try:
        return yuan_text(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return EMPTY


def cny_per_gpu_hour(value: Any) -> str:
    """``¥4.80/GPU·h``: a price per GPU-hour."""
    if value is None or value == "":
        return EMPTY
    return _("%(amount)s/GPU·h") % {"amount": cny(value)}


def cst(value: datetime | None) -> str:
    """``2026-12-04 17:00 CST``: a moment in China Standard Time, labelled."""
    if value is None:
        return EMPTY
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    local = value.astimezone(page_time_zone())
    return f"{local:%Y-%m-%d %H:%M} {time_zone_label()}"


def time_zone_label() -> str:
    """What the pages call their time zone: "CST" in English, "北京时间" in Chinese."""
    return pgettext("time zone of the pages", "CST")


def is_chinese() -> bool:
    """Whether the active language is Chinese."""
    return (translation.get_language() or "").lower().startswith("zh")


def local_name(thing: Any) -> str:
    """A region's or GPU model's name in the reader's language; its code only if it has no name."""
    if thing is None:
        return EMPTY
    if is_chinese():
        name_zh = getattr(thing, "name_zh", "") or ""
        if name_zh:
            return str(name_zh)
    return str(getattr(thing, "name", "") or getattr(thing, "code", "") or thing)


#: A latency class's name on the pages (menus capitalise it: ``capfirst``).
LATENCY_CLASS_NAMES = {
    LatencyClass.REALTIME: pgettext_lazy("latency class", "realtime"),
    LatencyClass.INTERACTIVE: pgettext_lazy("latency class", "interactive"),
    LatencyClass.STANDARD: pgettext_lazy("latency class", "standard"),
    LatencyClass.BATCH: pgettext_lazy("latency class", "batch"),
}

#: A status of a request, match, listing, run or voucher on the pages, by its code.
STATUS_NAMES = {
    "open": pgettext_lazy("status", "open"),
    "partially_matched": pgettext_lazy("status", "partly matched"),
    "matched": pgettext_lazy("status", "matched"),
    "cancelled": pgettext_lazy("status", "cancelled"),
    "expired": pgettext_lazy("status", "expired"),
    "reserved": pgettext_lazy("status", "reserved"),
    "running": pgettext_lazy("status", "running"),
    "completed": pgettext_lazy("status", "completed"),
    "failed": pgettext_lazy("status", "failed"),
    "preempted": pgettext_lazy("status", "pre-empted"),
    "succeeded": pgettext_lazy("status", "succeeded"),
    "active": pgettext_lazy("status", "active"),
    "ended": pgettext_lazy("status", "ended"),
    "withdrawn": pgettext_lazy("status", "withdrawn"),
    "closed": pgettext_lazy("status", "closed"),
    "revoked": pgettext_lazy("status", "revoked"),
}


def latency_class_name(value: Any) -> str:
    """A latency class (or its code) by its name in the reader's language; anything else as it is."""
    try:
        return str(LATENCY_CLASS_NAMES[LatencyClass(value)])
    except ValueError:
        return str(value)


def status_name(value: Any) -> str:
    """A status code by its name in the reader's language; an unknown one as it is."""
    return str(STATUS_NAMES.get(str(value), value))
