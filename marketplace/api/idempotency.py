"""``Idempotency-Key`` on creating POSTs, as Stripe does it.

The first request with a key does the work and its answer (2xx or 4xx) is stored; the same key
again — even 50 times at once — gets that same answer and creates nothing; the same key with a
different method, path or body is a 422. Keys are per user. A server error is not stored, so the
client can retry with the same key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.response import Response

from marketplace.api.inputs import DOMAIN_RULE
from marketplace.models import IdempotencyKey
from marketplace.services.idempotency import idempotency_claim, idempotency_record, idempotency_release

HEADER = "Idempotency-Key"
#: The header in the OpenAPI schema of every endpoint wrapped by :func:`idempotent`.
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (≤ 255 characters): retrying with it returns the first answer and creates nothing. "
        f"{DOMAIN_RULE} a key used before with a different request is a 422 naming this header."
    ),
)
#: How long a retry waits for the first attempt with its key to finish before answering 409.
WAIT_SECONDS = 10.0
MAX_KEY_LENGTH = 255


def fingerprint_of(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotent(view_method):
    """Wrap a creating ``post`` so that an ``Idempotency-Key`` header makes it safe to retry."""

    @functools.wraps(view_method)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if not key or not request.user.is_authenticated:
            return view_method(view, request, *args, **kwargs)
        if len(key) > MAX_KEY_LENGTH:
            too_long = _("At most %(n)s characters.") % {"n": MAX_KEY_LENGTH}
            return Response({HEADER: [too_long]}, status=status.HTTP_400_BAD_REQUEST)
        row, mine = idempotency_claim(user=request.user, key=key, fingerprint=fingerprint_of(request))
        if not mine:
            return _replay(row, fingerprint_of(request))
        try:
            response = view_method(view, request, *args, **kwargs)
        except Exception:
            idempotency_release(row_id=row.pk)
            raise
        if response.status_code >= 500:
            idempotency_release(row_id=row.pk)
        else:
            idempotency_record(row_id=row.pk, status=response.status_code, body=response.data)
        return response

    return wrapper


def _replay(row: IdempotencyKey, fingerprint: str) -> Response:
    if row.fingerprint != fingerprint:
        return Response(
            {HEADER: [_("This key was used with a different request; use a new key.")]},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    deadline = time.monotonic() + WAIT_SECONDS
    while row.state != IdempotencyKey.State.DONE and time.monotonic() < deadline:
        time.sleep(0.05)  # the first attempt is still working: wait for its answer
        row = IdempotencyKey.objects.filter(pk=row.pk).first() or row
    if row.state != IdempotencyKey.State.DONE:
        return Response({HEADER: [_("A request with this key is still in progress.")]}, status=status.HTTP_409_CONFLICT)
    response = Response(row.response_body, status=row.response_status)
    response["Idempotent-Replayed"] = "true"
    return response
