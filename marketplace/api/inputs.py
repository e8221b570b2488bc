"""Query parameters and bodies, through their serializers: what a view reads of a request.

One rule for both: a name the serializer does not declare is a 400 naming it (``"Unknown
parameter."`` in a query, ``"Unknown field."`` in a body), never silently ignored, so a misspelt
filter or field (``max_rtt`` for ``max_rtt_ms``) cannot pass for the default. The schema says the
same (``additionalProperties: false`` on every request body, ``marketplace.api.schema``).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.translation import gettext as _
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

#: Starts the part of a field's description that states a rule the schema cannot (it depends on the
#: market's rows, on now, or on another field): input that breaks it is a 400 naming the field (or
#: ``non_field_errors``, when the operation's description has the rule). ``marketplace.api.schema``.
DOMAIN_RULE = "Domain rule:"

#: Query parameters every list accepts besides its own filters.
COMMON_PARAMS = frozenset({"page", "page_size", "format"})


class NoFilters(serializers.Serializer):
    """Lists without filters still refuse unknown parameters."""


def refuse_unknown(given: Iterable[str], known: Iterable[str], *, message: str) -> None:
    """A 400 naming each name in ``given`` that is not in ``known``, with ``message``."""
    unknown = set(given) - set(known)
    if unknown:
        raise ValidationError({name: [message] for name in sorted(unknown)})


def validated_query(serializer_class, request) -> dict:
    """The request's query parameters through ``serializer_class``; unknown ones are a 400, and so
    are blank ones (``?month=``), which DRF would otherwise take as absent."""
    known = {*serializer_class().fields, *COMMON_PARAMS}
    refuse_unknown(request.query_params, known, message=_("Unknown parameter."))
    blank = sorted(name for name, values in request.query_params.lists() if "" in values)
    if blank:
        raise ValidationError({name: [_("Give a value, or leave the parameter out.")] for name in blank})
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def validated_body(serializer_class, request) -> dict:
    """The request's body through ``serializer_class``; a field it does not declare is a 400 naming
    it (read-only fields count as undeclared: a body cannot set them)."""
    refuse_unknown_fields(serializer_class, request.data)
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def refuse_unknown_fields(serializer_class, data) -> None:
    """A 400 naming each field of a body (an object) that ``serializer_class`` does not take:
    fields it does not declare, and read-only ones. A body that is not an object is the
    serializer's to refuse."""
    if isinstance(data, dict):
        writable = {name for name, field in serializer_class().fields.items() if not field.read_only}
        refuse_unknown(data, writable, message=_("Unknown field."))
