"""The API's JSON parser: DRF's, plus two refusals before any view sees a body.

- **Depth.** A body nested deeper than ``bounds.JSON_DEPTH`` (32) containers is a 400. Python reads
  JSON recursively, and so do DRF's validation, the idempotency fingerprint and the renderer: a body
  ~950 levels deep ran out of stack (``RecursionError``, a 500) on every JSON endpoint, anonymous
  ones included. The depth is measured after parsing, without recursion; a body too deep even to
  parse is refused with the same answer.
- **Unstorable text.** A NUL or a lone surrogate in any string, key or value, is a 400 naming the
  top-level field it is in (``marketplace.storable_text``): no column can store either. The form
  parsers (the token endpoint reads forms too) refuse the same.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

from marketplace.bounds import JSON_DEPTH
from marketplace.storable_text import refusal, shown, unstorable

NON_FIELD = "non_field_errors"


class TooDeep(ParseError):
    """A body nested deeper than ``JSON_DEPTH``; the message is in the caller's language."""

    def __init__(self, detail=None, code=None):
        if detail is None:
            detail = _(
                "JSON nested deeper than %(n)s levels of objects and arrays; no operation reads one so deep."
            ) % {"n": JSON_DEPTH.maximum}
        super().__init__(detail, code)


class JSONParser(parsers.JSONParser):
    """JSON bodies no deeper than ``JSON_DEPTH``, holding only text a column can store."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise TooDeep from None
        body_check(data)
        return data


def body_check(data) -> None:
    """Raise ``TooDeep`` or a ``ValidationError`` naming the field, or return: iteratively, so
    that the check itself cannot run out of stack."""
    pending = [(data, 1, NON_FIELD, _("The body"))]
    while pending:
        value, depth, field, where = pending.pop()
        if isinstance(value, dict | list) and depth > JSON_DEPTH.maximum:
            raise TooDeep
        if isinstance(value, dict):
            for key, item in value.items():
                top = shown(key) if field == NON_FIELD else field
                inner = shown(key) if field == NON_FIELD else f"{where}.{shown(key)}"
                if unstorable(key):
                    raise ValidationError({top: [refusal(_("The key %(key)s") % {"key": repr(shown(key))}, key)]})
                pending.append((item, depth + 1, top, inner))
        elif isinstance(value, list):
            pending.extend((item, depth + 1, field, f"{where}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, str) and unstorable(value):
            raise ValidationError({field: [refusal(where, value)]})


def form_check(data) -> None:
    """Raise a ``ValidationError`` naming the first form field whose name or value no column can store."""
    for name, values in data.lists():
        for text in (name, *values):
            if isinstance(text, str) and unstorable(text):
                raise ValidationError({shown(name): [refusal(shown(name), text)]})


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        form_check(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        form_check(parsed.data)
        return parsed
