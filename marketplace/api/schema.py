"""The OpenAPI schema documents every status an operation can answer, its errors included.

drf-spectacular documents only the success response of each operation. Clients (and the
schemathesis suite in tests/security) need the errors too, so :class:`AutoSchema` adds each error
status that the operation's view can produce, every one with the same body: ``{field: [message]}``
naming the input at fault, or ``{"detail": message}`` (see ``marketplace.api.errors``).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

from marketplace.api.idempotency import HEADER as IDEMPOTENCY_HEADER

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": (
        'What went wrong: `{field: [message]}` naming each input at fault ("non_field_errors" when no '
        'one field is), or `{"detail": message}`.'
    ),
    "minProperties": 1,
    "additionalProperties": {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "description": "Errors of a nested field, by key or list index."},
        ]
    },
}

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema plus the error responses of each operation (:meth:`error_statuses`)."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = self._error_component().ref
        for code, description in self.error_statuses(operation).items():
            operation["responses"].setdefault(
                code, {"description": description, "content": {"application/json": {"schema": error}}}
            )
        return operation

    def error_statuses(self, operation: dict) -> dict[str, str]:
        """The error statuses this operation can answer, from its view's classes and its inputs.

        400: every operation: text no column can store (a NUL) in a path, query parameter or header
        is refused before any view runs (``marketplace.storable_text``); and an operation that takes a
        body, query parameters or headers names the field at fault (unknown query parameters too).
        401 / 403: its view authenticates callers (a bad token is a 401 even where anyone may read)
        / it needs a particular kind of caller. 404: it names an object in its path, or is paginated
        (a page past the end). 409: it writes, and the write can conflict with the object's state.
        406: every operation: an ``Accept`` header that allows no JSON (the API answers JSON only).
        415: it takes a body, sent in a media type no parser reads. 422: it takes an
        ``Idempotency-Key`` and the key was used with another request. 429:
        throttled, or an organisation is at a quota. 503: Redis is down (``marketplace.api.errors``).
        """
        parameters = operation.get("parameters", [])
        locations = {parameter["in"] for parameter in parameters}
        statuses = {"400": "Invalid input: each field at fault is named with its message."}
        if self.view.get_authenticators():
            statuses["401"] = "Credentials are missing or invalid."
        if not all(isinstance(permission, AllowAny) for permission in self.view.get_permissions()):
            statuses["403"] = "This kind of account, or this API key's scopes, may not do this."
        if "path" in locations or any(parameter["name"] == "page" for parameter in parameters):
            statuses["404"] = "No such object for this caller, or no such page."
        if self.method in UNSAFE_METHODS:
            statuses["409"] = "The object's state does not allow this, or a concurrent change conflicted; retry."
        statuses["406"] = "The Accept header allows no JSON, the only media type the API answers in."
        if "requestBody" in operation:
            statuses["415"] = "The body is not in a media type the operation reads (JSON)."
        if any(parameter["name"] == IDEMPOTENCY_HEADER for parameter in parameters):
            statuses["422"] = "This Idempotency-Key was used with a different request."
        statuses["429"] = "Too many requests (throttled), or the organisation is at a quota."
        statuses["503"] = "Redis (throttling, the broker) is unavailable; nothing was written. Retry after Retry-After."
        return statuses

    def _get_paginator(self):
        """Only GET lists are paginated: a POST that answers a list (issued vouchers) answers all of it."""
        return super()._get_paginator() if self.method == "GET" else None

    def _error_component(self) -> ResolvedComponent:
        component = ResolvedComponent(
            name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT, schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        return component
