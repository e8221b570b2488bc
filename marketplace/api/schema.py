"""The OpenAPI schema documents every status an operation can answer, its errors included, and
says of every input exactly what the API accepts.

drf-spectacular documents only the success response of each operation. Clients (and the
schemathesis suite in tests/security) need the errors too, so :class:`AutoSchema` adds each error
status that the operation's view can produce, every one with the same body: ``{field: [message]}``
naming the input at fault, or ``{"detail": message}`` (see ``marketplace.api.errors``).

What a schema can state, it states: a decimal's range and places as its pattern
(:func:`decimal_pattern`), a request body's fields as the only ones it takes
(``additionalProperties: false``, ``marketplace.api.inputs``), a region's or GPU model's code as a
code's shape. What it cannot (a code no region has, a window in the past, a weak password, a name
taken) the field's or operation's description says after :data:`DOMAIN_RULE`: such input is a 400
naming the field. Each operation is tagged with its resource (the path's first part after
``/api/v1/``), and a field whose name carries a unit (:data:`FIELD_UNITS`) says it.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent, force_instance
from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

from marketplace.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from marketplace.api.inputs import DOMAIN_RULE
from marketplace.models import GpuModel, LlmModel, Region

#: The naming rules (``marketplace.names``), which no pattern a schema validator runs can state.
NAME_RULE = (
    f"{DOMAIN_RULE} a name with a control, invisible or private-use character, with < or >, or that looks "
    "like a name already in use, is a 400 naming this field."
)

#: A label only its owner reads (an API key's name): the characters of NAME_RULE, look-alikes allowed.
LABEL_RULE = (
    f"{DOMAIN_RULE} a name with a control, invisible or private-use character (Unicode category C*), or "
    "with < or >, is a 400 naming this field; nothing is written."
)

#: Text any column can store: no NUL (``marketplace.storable_text`` refuses it before any view runs).
STORABLE_TEXT_PATTERN = r"^[^\x00]*$"

#: The rules of a new user's fields that a schema cannot state (sign-up, a member added by an owner).
USERNAME_RULE = f"{NAME_RULE} So is a username taken (after NFKC normalising)."
PASSWORD_RULE = (
    f"{DOMAIN_RULE} a password Django's validators refuse (too short, too common, all digits, too like the "
    "username) is a 400 naming this field."
)
EMAIL_RULE = (
    f"{DOMAIN_RULE} an address Django's EmailValidator refuses (e.g. a top-level domain of one letter) is a "
    "400 naming this field."
)

#: A region's or GPU model's code: a slug, as the ``code`` column (a ``SlugField``) holds it
#: (``ningxia-zhongwei``, ``h100``). Not an enum: the rows are reference data an operator can add
#: to (``load_reference --file``, the admin), and the schema is generated without the database
#: (the tests load it at import).
REFERENCE_CODE_PATTERN = r"^[-a-zA-Z0-9_]+$"
REFERENCE_CODE_RULES = {
    Region: "A region code, as GET /api/v1/regions/ lists them.",
    GpuModel: "A GPU model code, as GET /api/v1/gpu-models/ lists them.",
    LlmModel: "An LLM model code, as GET /api/v1/llm-models/ lists them.",
}

#: The unit of each field by its name, stated once for every resource that has the field.
FIELD_UNITS = {
    "price_per_gpu_hour": "CNY per GPU-hour",
    "max_price_per_gpu_hour": "CNY per GPU-hour",
    "interruptible_floor_price_per_gpu_hour": "CNY per GPU-hour",
    "max_price": "CNY per GPU-hour",
    "energy_cost_per_gpu_hour": "CNY per GPU-hour",
    "cost_per_gpu_hour": "CNY per GPU-hour",
    "subsidy_per_gpu_hour": "CNY per GPU-hour",
    "subsidy_total": "CNY",
    "latency_weight": "CNY per ms per GPU-hour",
    "rtt_ms": "ms",
    "max_rtt_ms": "ms",
    "bound_ms": "ms",
    "rtts": "ms, by region code",
    "timings_ms": "ms",
    "indicative_price_per_gpu_hour": "CNY per GPU-hour",
    "min_price_per_gpu_hour": "CNY per GPU-hour",
    "total_cost": "CNY, over the placement's duration",
    "buyer_pays_total": "CNY, over the placement's duration",
    "buyer_pays_per_gpu_hour": "CNY per GPU-hour",
    "remaining_budget": "CNY",
    "remaining_value": "CNY",
    "gpu_hours_by_region": "GPU-hours, by region code",
    "west_gpu_hours": "GPU-hours",
    "duration_hours": "hours",
    "gpu_hours": "GPU-hours",
    "free_gpu_hours": "GPU-hours",
    "gross": "CNY",
    "subsidy": "CNY",
    "buyer_pays": "CNY",
    "platform_fee": "CNY",
    "provider_earns": "CNY",
    "budget": "CNY",
    "spent": "CNY",
    "reserved": "CNY",
    "remaining": "CNY",
    "cap": "CNY",
    "cap_per_request": "CNY",
    "cap_per_buyer": "CNY",
    "percent": "% of the price",
    "gpu_count": "GPUs",
    "gpus_per_node": "GPUs",
    "gpus_per_replica": "GPUs",
    "gpus": "GPUs",
    "free_gpus": "GPUs",
    "min_free_gpus": "GPUs",
    "power_price_cny_kwh": "CNY per kWh",
    "vram_gb": "GB",
    "tdp_w": "W",
    "duration_ms": "ms",
    "monthly_spend_cap": "CNY per calendar month (UTC)",
    "spend_committed": "CNY",
    "spent_this_month": "CNY",
    "memory_bandwidth_gbps": "GB/s",
    "bf16_tflops": "TFLOPS (10^12 FLOP/s)",
    "fp8_tflops": "TFLOPS (10^12 FLOP/s)",
    "params_b": "billions of parameters",
    "active_params_b": "billions of parameters",
    "max_context": "tokens",
    "prompt_tokens": "tokens",
    "output_tokens_per_second": "output tokens per second",
    "tokens_per_second": "output tokens per second",
    "tokens_per_second_placed": "output tokens per second",
    "price_per_million_tokens": "CNY per million output tokens",
    "max_price_per_million_tokens": "CNY per million output tokens",
    "ttft_ms": "ms",
    "suggested_price_per_gpu_hour": "CNY per GPU-hour",
    "suggested_gpu_hours": "GPU-hours",
    "next_round_gpu_hours": "GPU-hours",
    "rent_per_gpu_hour": "CNY per GPU-hour",
    "latency_rent_per_gpu_hour": "CNY per GPU-hour",
    "hours": "hours",
}


#: One line per operation, by method and path: what it does, in the product's words. An operation
#: missing here fails tests/marketplace/test_api_polish.py.
SUMMARIES = {
    ("POST", "/api/v1/auth/register/"): "Register a user and its buyer or provider organisation",
    ("POST", "/api/v1/auth/token/"): "Exchange a username and password for an API token",
    ("GET", "/api/v1/capacity/"): "Idle GPUs by region and latency class from an origin",
    ("GET", "/api/v1/prices/"): "Clearing prices of a GPU model per region after its latest round, from an origin",
    ("GET", "/api/v1/prices/history/"): "A region's clearing price of a GPU model over time",
    ("GET", "/api/v1/gpu-models/"): "List the GPU models",
    ("GET", "/api/v1/llm-models/"): "List the LLM models the marketplace can serve",
    ("GET", "/api/v1/regions/"): "List the regions",
    ("GET", "/api/v1/regions/{code}/"): "Read a region with its RTTs",
    ("GET", "/api/v1/listings/"): "Search listings",
    ("POST", "/api/v1/listings/"): "Create a listing (providers)",
    ("GET", "/api/v1/listings/{listing_id}/"): "Read a listing",
    ("PATCH", "/api/v1/listings/{listing_id}/"): "Change a listing's terms (its provider)",
    ("DELETE", "/api/v1/listings/{listing_id}/"): "Withdraw a listing (its provider)",
    ("POST", "/api/v1/listings/{listing_id}/fail-nodes/"): "Report failed nodes of a listing (its provider)",
    ("GET", "/api/v1/listings/{listing_id}/guidance/"): "Why a listing idles; the price to fill it (its provider)",
    ("GET", "/api/v1/listings/{listing_id}/profiles/"): "A listing's measured throughput profiles (its provider)",
    ("POST", "/api/v1/listings/{listing_id}/profiles/"): "Publish a measured throughput profile (its provider)",
    ("GET", "/api/v1/matches/"): "List the caller's matches",
    ("GET", "/api/v1/matches/{match_id}/"): "Read a match with its cost breakdown and explanation",
    ("POST", "/api/v1/matches/{match_id}/cancel/"): "Stop a match (its buyer)",
    ("GET", "/api/v1/matching-runs/"): "List the matching runs",
    ("POST", "/api/v1/quotes/"): "Quote a request without submitting it",
    ("GET", "/api/v1/requests/"): "List the caller's requests",
    ("POST", "/api/v1/requests/"): "Submit a request (buyers)",
    ("GET", "/api/v1/requests/{request_id}/"): "Read a request",
    ("POST", "/api/v1/requests/{request_id}/cancel/"): "Cancel a request (its buyer)",
    ("GET", "/api/v1/statements/"): "A month's statement as JSON",
    ("GET", "/api/v1/statements/csv/"): "A month's statement as CSV",
    ("GET", "/api/v1/voucher-programs/"): "List the voucher programmes the caller may see",
    ("POST", "/api/v1/voucher-programs/"): "Create a voucher programme (staff) or a promotion (providers)",
    ("GET", "/api/v1/voucher-programs/{program_id}/"): "Read a voucher programme",
    ("PATCH", "/api/v1/voucher-programs/{program_id}/"): "Change a voucher programme (its sponsor)",
    ("GET", "/api/v1/voucher-programs/{program_id}/report/"): "A voucher programme's spending report",
    ("GET", "/api/v1/voucher-programs/{program_id}/vouchers/"): "List a programme's voucher codes",
    ("POST", "/api/v1/voucher-programs/{program_id}/vouchers/"): "Issue voucher codes in a programme",
    ("GET", "/api/v1/vouchers/"): "List the buyer's vouchers",
    ("POST", "/api/v1/vouchers/claim/"): "Claim a voucher code (buyers)",
    ("GET", "/api/v1/api-keys/"): "List the organisation's API keys (owners)",
    ("POST", "/api/v1/api-keys/"): "Create an API key with scopes, expiry and a spend cap; its secret is shown once",
    ("GET", "/api/v1/api-keys/{key_id}/"): "Read an API key (owners)",
    ("DELETE", "/api/v1/api-keys/{key_id}/"): "Revoke an API key (owners)",
    ("GET", "/api/v1/members/"): "List the organisation's members and their roles",
    ("POST", "/api/v1/members/"): "Add a member to the organisation (owners)",
    ("GET", "/api/v1/members/{member_id}/"): "Read a member",
    ("PATCH", "/api/v1/members/{member_id}/"): "Change a member's role (owners)",
    ("DELETE", "/api/v1/members/{member_id}/"): "Remove a member and revoke its keys (owners)",
    ("GET", "/api/v1/organisation/"): "Read the caller's organisation, its spend cap and this month's spend",
    ("PATCH", "/api/v1/organisation/"): "Set the organisation's monthly spend cap (owners)",
    ("GET", "/api/v1/agent/listings/"): "The provider's active listings as its agent sees them (agent keys)",
    ("GET", "/api/v1/agent/assignments/"): "Matches the provider's agent is to provision, with nodes and deadlines",
    ("POST", "/api/v1/agent/matches/{match_id}/ready/"): "Say a match is provisioned: it runs and is metered from now",
    ("POST", "/api/v1/agent/heartbeats/"): "Report each node's health; silent or failed nodes fail over their matches",
    ("GET", "/api/v1/webhooks/"): "List the organisation's webhook endpoints",
    ("POST", "/api/v1/webhooks/"): "Register a webhook endpoint; its signing secret is shown once",
    ("GET", "/api/v1/webhooks/{endpoint_id}/"): "Read a webhook endpoint",
    ("PATCH", "/api/v1/webhooks/{endpoint_id}/"): "Change a webhook endpoint's URL, events or state (owners)",
    ("DELETE", "/api/v1/webhooks/{endpoint_id}/"): "Delete a webhook endpoint (owners)",
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries/"): "An endpoint's delivery log with every attempt",
    ("POST", "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver/"): "Send a delivery again by hand",
}


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The decimal strings ``field`` accepts, as a regular expression: ASCII digits, leading zeros
    allowed, at most ``decimal_places`` after a point, and the range from ``min_value`` to
    ``max_value`` where the bounds are 0 (or one unit of the last place, i.e. "above 0") and a
    power of ten, as every bound in ``marketplace.bounds`` is. Other bounds keep to the digits."""
    places = field.decimal_places or 0
    fraction = rf"(\.[0-9]{{1,{places}}})?" if places else ""
    low, high = field.min_value, field.max_value
    sign = "" if low is not None and low >= 0 else "-?"
    whole = field.max_whole_digits
    below = rf"[0-9]{{1,{whole}}}{fraction}" if whole is not None else rf"[0-9]+{fraction}"
    if low is not None and high is not None and _power_of_ten(high) is not None:
        digits = _power_of_ten(high)
        zeros = rf"(\.0{{1,{places}}})?" if places else ""
        if low == 0:
            below = rf"[0-9]{{1,{digits}}}{fraction}" if digits else f"0{fraction}"
        elif low == Decimal(1).scaleb(-places):  # the least amount above 0
            nonzero_fraction = "|".join(f"{'0' * i}[1-9][0-9]{{0,{places - i - 1}}}" for i in range(places))
            small = rf"0\.({nonzero_fraction})" if places else "(?!)"
            below = rf"[1-9][0-9]{{0,{digits - 1}}}{fraction}|{small}" if digits else small
        else:
            return rf"^{sign}0*{below}$"
        return rf"^0*({below}|1{'0' * digits}{zeros})$"
    return rf"^{sign}0*{below}$"


def _has_pattern(field: serializers.Field, schema: dict | None) -> bool:
    """Whether the field's schema has (or will have, from a validator) a pattern of its own."""
    return not schema or "pattern" in schema or any(isinstance(v, RegexValidator) for v in field.validators)


def _power_of_ten(value: Decimal) -> int | None:
    """``k`` if ``value`` is ``10**k`` for a whole ``k`` from 0, else None."""
    text = format(value.normalize(), "f")
    return len(text) - 1 if re.fullmatch(r"10*", text) else None


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
    """drf-spectacular's schema plus the error responses of each operation (:meth:`error_statuses`),
    tags by resource, request bodies closed to unknown fields, and fields as precise as their
    rules (see the module's docstring)."""

    def get_tags(self) -> list[str]:
        """The resource: ``/api/v1/voucher-programs/{program_id}/report/`` → ``voucher-programs``."""
        parts = [part for part in self.path.split("/") if part and not part.startswith("{")]
        return parts[2:3] if parts[:2] == ["api", "v1"] else parts[:1]

    def get_summary(self) -> str | None:
        """The operation's line in :data:`SUMMARIES` (``extend_schema(summary=…)`` overrides it)."""
        return SUMMARIES.get((self.method, self.path))

    def get_description(self) -> str:
        """The view's docstring (its method's, else its class's); else the summary, so that no
        operation goes undescribed."""
        return super().get_description() or (f"{self.get_summary()}." if self.get_summary() else "")

    def _get_request_for_media_type(self, serializer, direction="request"):
        """A body of several forms (``PolymorphicProxySerializer``: the quote's GPU and inference
        forms) is required, as each form is: drf-spectacular looks for required fields on the
        ``oneOf`` itself, which has none."""
        schema, required = super()._get_request_for_media_type(serializer, direction)
        if schema is not None and isinstance(force_instance(serializer), PolymorphicProxySerializer):
            required = True
        return schema, required

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request":
            schema["additionalProperties"] = False
        for name, field_schema in schema.get("properties", {}).items():
            _state_unit(name, field_schema)
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and schema and "pattern" in schema:
            schema["pattern"] = decimal_pattern(field)
        if isinstance(field, serializers.CharField) and direction == "request" and not _has_pattern(field, schema):
            schema["pattern"] = STORABLE_TEXT_PATTERN
        related = field.child_relation if isinstance(field, serializers.ManyRelatedField) else field
        model = getattr(getattr(related, "queryset", None), "model", None)
        if isinstance(related, serializers.SlugRelatedField) and model in REFERENCE_CODE_RULES:
            if related is field:
                schema["pattern"] = REFERENCE_CODE_PATTERN
            rule = f"{REFERENCE_CODE_RULES[model]} {DOMAIN_RULE} a code no row has is a 400 naming this field."
            schema["description"] = f"{schema['description']} {rule}" if schema.get("description") else rule
        return schema

    def _get_parameters(self):
        parameters = super()._get_parameters()
        for parameter in parameters:
            _state_unit(parameter["name"], parameter)
        return parameters

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


def _state_unit(name: str, schema: dict) -> None:
    """Append the unit of a field named ``name`` (:data:`FIELD_UNITS`) to its description."""
    unit = FIELD_UNITS.get(name)
    if not unit or unit in schema.get("description", ""):
        return
    if "$ref" in schema:  # a reference takes no siblings: the description goes beside an allOf
        schema["allOf"] = [{"$ref": schema.pop("$ref")}]
    schema["description"] = f"{schema.get('description', '')} Unit: {unit}.".strip()
