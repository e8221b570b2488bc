"""Request latency by route, method and status class, recorded by :class:`RequestMetricsMiddleware`.

The route is the URL pattern that matched (``api/v1/listings/<int:pk>/``), never the raw path, so
the label takes as many values as there are patterns, whatever ids clients send. Under gunicorn
the histogram lives in prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by
config/gunicorn.py before any worker imports this module), so a scrape sums every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from prometheus_client import Histogram

#: A request no URL pattern matched (a 404, or an answer given before URL resolution).
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_DURATION = Histogram(
    "marketplace_http_request_duration_seconds",
    "Time from a request reaching Django to its response leaving it, by URL pattern, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def route_of(request: HttpRequest) -> str:
    """The URL pattern that matched ``request``, from the root (``/api/v1/matches/<int:pk>/``)."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED_ROUTE
    return "/" + match.route


class RequestMetricsMiddleware:
    """Times every request through the rest of the stack; the outermost middleware (base.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "other"
        status = f"{response.status_code // 100}xx"
        REQUEST_DURATION.labels(route_of(request), method, status).observe(time.perf_counter() - started)
        return response
