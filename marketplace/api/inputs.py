"""Query parameters and bodies, through their serializers: what a view reads of a request."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ValidationError

#: Query parameters every list accepts besides its own filters.
COMMON_PARAMS = frozenset({"page", "page_size", "format"})


class NoFilters(serializers.Serializer):
    """Lists without filters still refuse unknown parameters."""


def validated_query(serializer_class, request) -> dict:
    """The request's query parameters through ``serializer_class``; unknown ones are a 400, and so
    are blank ones (``?month=``), which DRF would otherwise take as absent."""
    unknown = set(request.query_params) - set(serializer_class().fields) - COMMON_PARAMS
    if unknown:
        raise ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})
    blank = sorted(name for name, values in request.query_params.lists() if "" in values)
    if blank:
        raise ValidationError({name: ["Give a value, or leave the parameter out."] for name in blank})
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
