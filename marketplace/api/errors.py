"""Error responses: always ``{field: [message]}`` (or ``{"detail": …}``), never a 500 for bad input."""

from __future__ import annotations

import logging

from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from marketplace.errors import DomainError

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """DRF's handler, plus domain errors as their 4xx and constraint violations as 409.

    A constraint violation means two writers raced past the services' checks; the database kept
    the data whole, so the client gets a conflict to retry rather than a server error.
    """
    if isinstance(exc, DomainError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, IntegrityError):
        logger.warning("constraint violation: %s", exc)
        return Response(
            {"non_field_errors": ["A concurrent change conflicted with this one; try again."]},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
