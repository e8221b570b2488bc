"""Error responses: always ``{field: [message]}`` (or ``{"detail": …}``), never a 500 for bad input."""

from __future__ import annotations

import logging

from django.db import IntegrityError
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.utils.translation import gettext as _
from django.views.defaults import bad_request as bad_request_page
from django.views.defaults import page_not_found
from django.views.defaults import server_error as server_error_page
from kombu.exceptions import OperationalError as BrokerUnavailable
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.errors import DomainError

logger = logging.getLogger(__name__)

#: Errors that mean Redis (the shared cache or the broker) cannot be reached right now. Redis
#: still loading its data after a restart raises a ConnectionError subclass, so it counts too.
SERVER_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, BrokerUnavailable)
#: JSON as DRF writes it (``UNICODE_JSON``): "未找到。", not "\u672a\u627e\u5230\u3002".
AS_WRITTEN = {"ensure_ascii": False}
#: Seconds a client is told to wait before retrying after a 503.
RETRY_AFTER_SECONDS = 5


def exception_handler(exc, context):
    """DRF's handler, plus domain errors as their 4xx, constraint violations as 409 and a Redis
    outage as 503.

    A constraint violation means two writers raced past the services' checks; the database kept
    the data whole, so the client gets a conflict to retry rather than a server error.

    A Redis outage surfaces before any write (the throttles count in the cache): nothing was
    written, so the client is told to retry. After a write commits, the matching trigger swallows
    the outage itself (``services.triggers``): a created object is always answered as created.
    """
    if isinstance(exc, SERVER_UNAVAILABLE):
        return service_unavailable(exc)
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, IntegrityError):
        logger.warning("constraint violation: %s", exc)
        return Response(
            {"non_field_errors": [_("A concurrent change conflicted with this one; try again.")]},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)


def service_unavailable(exc: Exception) -> Response:
    """503 with ``Retry-After``: a server the API needs is down, and nothing was written."""
    logger.warning("answering 503, a server is unavailable: %r", exc)
    response = Response(
        {"detail": _("The service is temporarily unavailable; nothing was saved. Retry shortly.")},
        status=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


# Django's own error pages answer what no view sees (no route, an unhandled exception, a refused
# CSRF token); under /api/ they answer JSON like every other API error, so that clients (and the
# documented content type) see one error format. Elsewhere they are our pages, in the reader's
# language: templates/404.html and 500.html (on error_base.html, which needs no database), and
# web/403.html.


def is_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """``handler404``: no route matches, e.g. a malformed id (``/api/v1/listings/abc/``)."""
    if is_api(request):
        return JsonResponse({"detail": _("Not found.")}, status=404, json_dumps_params=AS_WRITTEN)
    return page_not_found(request, exception)


def bad_request(request, exception=None):
    """``handler400``: Django refused the request itself, e.g. for a Host header it does not serve."""
    if is_api(request):
        return JsonResponse({"detail": _("Bad request.")}, status=400, json_dumps_params=AS_WRITTEN)
    return bad_request_page(request, exception)


def server_error(request):
    """``handler500``: an exception no view handled. The body says nothing of the cause (that goes
    to the log, with the traceback, through Django's ``django.request`` logger)."""
    if is_api(request):
        return JsonResponse({"detail": _("Server error.")}, status=500, json_dumps_params=AS_WRITTEN)
    return server_error_page(request)


def permission_denied(request, exception=None):
    """``handler403``: a view outside DRF raised ``PermissionDenied``. The exception's text is not
    shown: it is written for the log, not for the reader."""
    if is_api(request):
        detail = _("You do not have permission to perform this action.")
        return JsonResponse({"detail": detail}, status=403, json_dumps_params=AS_WRITTEN)
    message = gettext("This page is not for this account.")
    return render(request, "web/403.html", {"message": message}, status=403)


def csrf_failure(request, reason: str = ""):
    """``CSRF_FAILURE_VIEW``: a form posted without its CSRF token (a page open for too long, or
    cookies blocked), or a cross-site post. DRF's views check CSRF themselves and answer JSON;
    this answers what the middleware refuses before any view runs."""
    if is_api(request):
        return JsonResponse({"detail": f"CSRF Failed: {reason}"}, status=403, json_dumps_params=AS_WRITTEN)
    message = gettext(
        "The form's security token is missing or out of date (the page was open for long, or cookies "
        "are blocked). Go back, reload the page and send the form again."
    )
    return render(request, "web/403.html", {"message": message, "csrf": True}, status=403)
