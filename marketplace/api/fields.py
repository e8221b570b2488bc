"""The JSON field types every resource's serializers share.

A body field takes only the JSON type its schema declares (``JsonTypeMixin``); regions and GPU
models are named by code; times go out as UTC.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from marketplace import selectors
from marketplace.bounds import DECIMAL_TEXT, TimeWindow
from marketplace.models import GpuModel, Region
from matching.costs import utc_text
from matching.latency import LatencyClass

LATENCY_CLASSES = [c.value for c in LatencyClass]


def region_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all(), **kwargs)


def gpu_model_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="code", queryset=GpuModel.objects.all(), **kwargs)


class JsonTypeMixin:
    """Bodies are JSON: a field takes only the JSON type its schema declares. DRF's text fields turn
    a number into a string (``"username": 1e-05`` would make a user named "1e-05"), and its number
    fields parse a string (``"replicas": "3"``); here either is a 400 naming the field."""

    takes_text = True  # the schema says string (else: number)

    def to_internal_value(self, data):
        if isinstance(data, str) != self.takes_text:
            self.fail("json_type")
        return super().to_internal_value(data)


class TextField(JsonTypeMixin, serializers.CharField):
    default_error_messages = {"json_type": _("Not a valid string.")}


class PatternField(JsonTypeMixin, serializers.RegexField):
    default_error_messages = {"json_type": _("Not a valid string.")}


class DecimalText(JsonTypeMixin, serializers.DecimalField):
    """A decimal in a body or a query: a string such as "9.50", as the schema says, in ASCII digits
    with no exponent (``bounds.DECIMAL_TEXT``); a JSON number, which would pass through a binary
    float, and "1e5" or "٥", which Python's ``Decimal`` would read as 100000 and 5, are 400s. So is
    a minus sign where the least value is 0 or more ("-0" too), as the schema's pattern says
    (``marketplace.api.schema.decimal_pattern``)."""

    default_error_messages = {
        "json_type": _('A decimal number as a string, such as "9.50".'),
        "ascii": _('A decimal in the digits 0-9, such as "9.50": no exponent, spaces or other digits.'),
        "sign": _("A decimal without a sign: this value is never negative."),
    }

    def validate_empty_values(self, data):
        """A blank string is not a decimal, even where the field takes null: DRF would read ``""`` as
        null there, which the schema (a pattern, or JSON null) does not allow."""
        if isinstance(data, str) and not data.strip():
            self.fail("ascii")
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, str) and not re.fullmatch(DECIMAL_TEXT, data):
            self.fail("ascii")
        if isinstance(data, str) and data.startswith("-") and self.min_value is not None and self.min_value >= 0:
            self.fail("sign")
        return super().to_internal_value(data)


class AwareTime(serializers.DateTimeField):
    """A time in a body, ISO 8601 with its offset (``2026-12-04T09:00:00+08:00`` or ``…Z``): a time
    without one is a 400, not read as UTC. ``window`` (a ``bounds.TimeWindow``) is stated in the
    schema; the service checks it against the market's now."""

    default_error_messages = {"naive": _("Give the time with its offset, e.g. 2026-12-04T09:00:00+08:00 or …Z.")}

    def __init__(self, *, window: TimeWindow | None = None, **kwargs):
        if window is not None:
            rule = "Domain rule: a time outside this window (it moves with now), or out of order, is a 400 naming it."
            kwargs.setdefault("help_text", f"{window.reason} {rule}")
        super().__init__(**kwargs)

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


class IntegerNumber(JsonTypeMixin, serializers.IntegerField):
    takes_text = False
    default_error_messages = {"json_type": _("A whole number, not a string.")}


class NumberChoice(JsonTypeMixin, serializers.ChoiceField):
    takes_text = False
    default_error_messages = {"json_type": _("A whole number, not a string.")}


class ReferenceCodeField(serializers.SlugRelatedField):
    """A region or GPU model by code, read from the process's copy of the reference table.

    For search parameters, which only filter by the row: no query per parameter per request. Bodies
    that write keep ``region_field``/``gpu_model_field``, which read the row as it is now.
    """

    def __init__(self, model, **kwargs):
        super().__init__(slug_field="code", queryset=model.objects.all(), **kwargs)

    def to_internal_value(self, data):
        row = selectors.reference_by_code(self.queryset.model, str(data))
        if row is None:
            self.fail("does_not_exist", slug_name=self.slug_field, value=str(data))
        return row


class UtcTimeOut(serializers.DateTimeField):
    """What ``DateTimeField`` writes of an aware time in UTC (this project's only time zone), at a
    tenth of the cost: DRF looks the time zone and the output format up in the settings for every
    value, which showed at two times per listing and up to 200 listings a page."""

    def to_representation(self, value):
        if not isinstance(value, datetime) or value.tzinfo is None:
            return super().to_representation(value)
        return utc_text(value)
