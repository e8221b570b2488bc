"""``GET /metrics``: every metric in Prometheus' text format (OpenMetrics when asked for).

Open under the local settings (``METRICS_PUBLIC``); otherwise a scraper must send
``Authorization: Bearer <METRICS_TOKEN>`` or come from an address in ``METRICS_ALLOWED_IPS``
(the client address as the API's throttles see it, ``NUM_PROXIES`` hops back). With neither set,
nobody may scrape.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder
from rest_framework.throttling import BaseThrottle

from marketplace.metrics.market import MarketCollector
from marketplace.metrics.queues import QueueCollector
from marketplace.metrics.task_problems import TaskProblemCollector


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)


def scrape_registry() -> CollectorRegistry:
    """This scrape's metrics: the request histograms of every web process (multiprocess mode,
    under gunicorn) or of this one (runserver, tests), and the collectors that read the database,
    the broker and the shared cache."""
    registry = CollectorRegistry()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    for collector in (MarketCollector(), QueueCollector(), TaskProblemCollector()):
        registry.register(collector)
    return registry


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """None when ``request`` may scrape; else a 401 (a token would let it in) or a 403."""
    if settings.METRICS_PUBLIC:
        return None
    token = settings.METRICS_TOKEN
    sent = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return None
    if _address_allowed(request):
        return None
    if token:
        response = HttpResponse(
            gettext("Send Authorization: Bearer <METRICS_TOKEN>.") + "\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(gettext("This address may not read /metrics.") + "\n", status=403, content_type="text/plain")


def _address_allowed(request: HttpRequest) -> bool:
    networks = settings.METRICS_ALLOWED_IPS
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(BaseThrottle().get_ident(request))
    except ValueError:
        return False
    return any(address in network for network in networks)
