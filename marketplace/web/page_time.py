"""China Standard Time on the pages, UTC in the API.

Everything is stored in UTC and the API serves UTC (``TIME_ZONE``). The people who use the pages
are in China, so a page shows and a form takes ``PAGE_TIME_ZONE`` (Asia/Shanghai): an operator
typing 09:00 means 09:00 Beijing time, and every time on a page says so (the ``cst`` filter in
``marketplace/templatetags/market.py`` labels it "CST" / "北京时间").
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

#: Paths that answer machines, not people: they keep UTC.
UTC_PREFIXES = ("/api/", "/metrics", "/healthz")


def page_time_zone() -> zoneinfo.ZoneInfo:
    """The zone the pages show and the forms take."""
    return zoneinfo.ZoneInfo(settings.PAGE_TIME_ZONE)


class PageTimeZoneMiddleware:
    """Activates the page time zone for every path but the API's (rendering included)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(UTC_PREFIXES):
            return self.get_response(request)
        with timezone.override(page_time_zone()):
            return self.get_response(request)
