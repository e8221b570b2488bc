"""Who may do what: every API operation × every kind of caller, and no mass assignment.

The operations come from the project's own OpenAPI schema, and the schema is checked against the
URL routes, so a new endpoint fails ``test_every_operation_has_a_row`` until it gets its row here.

Rules the matrix holds the API to:
- another party's object does not exist for the caller: 404, exactly as for an id nobody has (so
  a status or a message can't reveal it exists); the wrong kind of account is a 403, whatever the id;
- anonymous callers get 401 wherever an account is needed; public reads (regions, GPU models,
  capacity, active listings) are open to all;
- a refused call changes nothing in the database, and no read ever writes;
- lists show each caller its own objects only;
- read-only fields (owner, status, free GPUs, balances, ids, timestamps, …) sent to a writing
  operation change nothing: it stores exactly what the same call without them stores.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction
from django.urls import URLPattern
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token

from marketplace.api.urls import urlpatterns as api_routes
from marketplace.models import (
    ApiKey,
    BuyerRequest,
    Listing,
    Match,
    Membership,
    Voucher,
    VoucherProgram,
    WebhookDelivery,
    WebhookEndpoint,
)
from marketplace.services.market_clock import market_clock_freeze
from tests.inference_builders import inference_body as inference_form
from tests.security.conftest import PASSWORD, ROLES
from tests.security.figures import FIGURES

API = "/api/v1"
SCHEMA = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
OPERATIONS = {(method.upper(), path) for path, item in SCHEMA["paths"].items() for method in item}
FUTURE = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
LATER = FUTURE + timedelta(days=20)


def expect(*, provider, other_provider, buyer, other_buyer, anonymous, staff) -> dict[str, int]:
    """Every role's status, each one spelled out: no default can hide a forgotten caller."""
    return {
        "provider": provider,
        "other_provider": other_provider,
        "buyer": buyer,
        "other_buyer": other_buyer,
        "anonymous": anonymous,
        "staff": staff,
    }


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


# The shapes that recur: who may act on a provider's object, a buyer's object, a programme.
PROVIDER_OWNS = expect(provider=200, other_provider=404, buyer=403, other_buyer=403, anonymous=401, staff=403)
BUYER_OWNS = expect(provider=403, other_provider=403, buyer=200, other_buyer=404, anonymous=401, staff=403)
PROVIDERS_ONLY = expect(provider=201, other_provider=201, buyer=403, other_buyer=403, anonymous=401, staff=403)
BUYERS_ONLY = expect(provider=403, other_provider=403, buyer=200, other_buyer=200, anonymous=401, staff=403)
ACCOUNTS_ONLY = expect(provider=200, other_provider=200, buyer=200, other_buyer=200, anonymous=401, staff=200)
STAFF_ONLY = expect(provider=403, other_provider=403, buyer=403, other_buyer=403, anonymous=401, staff=200)
ORGANISATIONS_ONLY = expect(provider=200, other_provider=200, buyer=200, other_buyer=200, anonymous=401, staff=403)
PROMOTION = expect(provider=200, other_provider=404, buyer=403, other_buyer=403, anonymous=401, staff=200)
BUYERS_OWN_ORGANISATION = expect(provider=404, other_provider=404, buyer=200, other_buyer=404, anonymous=401, staff=403)
BUYERS_OWN_WEBHOOK = expect(provider=404, other_provider=404, buyer=200, other_buyer=404, anonymous=401, staff=403)
PROVIDER_LISTS = expect(provider=200, other_provider=200, buyer=403, other_buyer=403, anonymous=401, staff=403)
CITY_PROGRAM = expect(provider=404, other_provider=404, buyer=403, other_buyer=403, anonymous=401, staff=200)


def created(expected: dict[str, int]) -> dict[str, int]:
    return {role: 201 if status == 200 else status for role, status in expected.items()}


def listing_body(role: str) -> dict:
    return {
        "region": "ningxia-zhongwei",
        "gpu_model": "h20",
        "gpu_count": 16,
        "gpus_per_node": 8,
        "price_per_gpu_hour": "6.20",
        "available_from": FUTURE.isoformat(),
        "available_until": LATER.isoformat(),
    }


def request_body(role: str) -> dict:
    return {
        "gpu_model": "h20",
        "gpus_per_replica": 2,
        "replicas": 3,
        "origin": "shanghai",
        "latency_class": "standard",
        "max_price_per_gpu_hour": "9.00",
        "duration_hours": 24,
        "start_by": FUTURE.isoformat(),
    }


def inference_body(role: str) -> dict:
    """The quote's inference form (issue 15): an LLM at a throughput under a TTFT target."""
    return inference_form(max_price_per_million_tokens="9")


def program_body(role: str) -> dict:
    """Staff name the sponsor; a provider's promotion is sponsored by the provider (no sponsor given)."""
    return {
        "name": f"Programme of {role}",
        **({"sponsor": "Ningxia government"} if role == "staff" else {}),
        "percent": "20",
        "budget": "1000",
        "valid_from": FUTURE.isoformat(),
        "valid_until": LATER.isoformat(),
    }


def profile_body(role: str) -> dict:
    return {
        "llm_model": "deepseek-r1-distill-qwen-7b",
        "precision": "BF16",
        "gpus_per_replica": 1,
        "prompt_tokens": 1000,
        "concurrency": 16,
        "output_tokens_per_second": "1200.0",
        "ttft_ms": "250.0",
        "measured_at": (timezone.now() - timedelta(days=1)).replace(microsecond=0).isoformat(),
    }


def member_body(role: str) -> dict:
    return {
        "username": f"member-of-{role}",
        "email": f"m-{role}@example.com",
        "password": "a-long-pass-phrase",
        "role": "member",
    }


def register_body(role: str) -> dict:
    return {
        "username": f"new-{role}",
        "password": "a-long-pass-phrase",
        "email": f"{role}@example.com",
        "role": "buyer",
        "organisation": f"New organisation of {role}",
    }


@dataclass(frozen=True)
class Row:
    """One operation on one target: the status each role gets, and what a valid call sends.

    ``target`` names the market object that fills the path's parameter (None: no parameter);
    ``body`` builds a valid body for a role (so that only who calls decides the answer);
    ``visible`` (lists) names the market objects each role finds in the results.
    """

    expected: dict[str, int]
    target: str | None = None
    query: str = ""
    body: Any = None
    visible: dict[str, set[str]] = field(default_factory=dict)


def sees(**visible: set[str]) -> dict[str, set[str]]:
    assert set(visible) == set(ROLES), set(ROLES) ^ set(visible)
    return visible


MATRIX: dict[tuple[str, str], list[Row]] = {
    # accounts: open to anyone (a signed-in caller only makes another account, of no power)
    ("POST", "/api/v1/auth/register/"): [Row(everyone(201), body=register_body)],
    ("POST", "/api/v1/auth/token/"): [Row(everyone(200), body=lambda role: {"username": "buy", "password": PASSWORD})],
    # reference data and the market: public reads
    ("GET", "/api/v1/regions/"): [Row(everyone(200))],
    ("GET", "/api/v1/regions/{code}/"): [Row(everyone(200), target="region")],
    ("GET", "/api/v1/gpu-models/"): [Row(everyone(200))],
    ("GET", "/api/v1/llm-models/"): [Row(everyone(200))],
    ("GET", "/api/v1/capacity/"): [Row(everyone(200), query="origin=shanghai")],
    ("GET", "/api/v1/prices/"): [Row(everyone(200), query="gpu_model=h20&origin=shanghai")],
    ("GET", "/api/v1/prices/history/"): [Row(everyone(200), query="gpu_model=h20&region=shanghai&hours=24")],
    ("GET", "/api/v1/listings/"): [
        Row(
            everyone(200),
            visible=sees(
                provider={"listing", "withdrawn", "foreign_listing"},
                other_provider={"listing", "foreign_listing"},
                buyer={"listing", "foreign_listing"},
                other_buyer={"listing", "foreign_listing"},
                anonymous={"listing", "foreign_listing"},
                staff={"listing", "foreign_listing"},
            ),
        )
    ],
    ("POST", "/api/v1/listings/"): [Row(PROVIDERS_ONLY, body=listing_body)],
    ("GET", "/api/v1/listings/{listing_id}/"): [
        Row(everyone(200), target="listing"),
        Row(
            expect(provider=200, other_provider=404, buyer=404, other_buyer=404, anonymous=404, staff=404),
            target="withdrawn",
        ),
    ],
    ("PATCH", "/api/v1/listings/{listing_id}/"): [
        Row(PROVIDER_OWNS, target="listing", body=lambda role: {"price_per_gpu_hour": "6.50"})
    ],
    ("DELETE", "/api/v1/listings/{listing_id}/"): [Row(PROVIDER_OWNS, target="listing")],
    ("POST", "/api/v1/listings/{listing_id}/fail-nodes/"): [
        Row(PROVIDER_OWNS, target="listing", body=lambda role: {"nodes": [1]})
    ],
    ("GET", "/api/v1/listings/{listing_id}/guidance/"): [Row(PROVIDER_OWNS, target="listing")],
    ("GET", "/api/v1/listings/{listing_id}/profiles/"): [Row(PROVIDER_OWNS, target="listing")],
    ("POST", "/api/v1/listings/{listing_id}/profiles/"): [
        Row(created(PROVIDER_OWNS), target="listing", body=profile_body)
    ],
    # demand
    ("GET", "/api/v1/requests/"): [
        Row(
            ACCOUNTS_ONLY,
            visible=sees(
                provider=set(),
                other_provider=set(),
                buyer={"request"},
                other_buyer={"foreign_request"},
                anonymous=set(),
                staff={"request", "foreign_request"},
            ),
        )
    ],
    ("POST", "/api/v1/requests/"): [Row(created(BUYERS_ONLY), body=request_body)],
    ("GET", "/api/v1/requests/{request_id}/"): [
        Row(expect(provider=404, other_provider=404, buyer=200, other_buyer=404, anonymous=401, staff=200), "request")
    ],
    ("POST", "/api/v1/requests/{request_id}/cancel/"): [Row(BUYER_OWNS, target="request")],
    ("POST", "/api/v1/quotes/"): [Row(BUYERS_ONLY, body=request_body), Row(BUYERS_ONLY, body=inference_body)],
    # matches, runs, statements
    ("GET", "/api/v1/matches/"): [
        Row(
            ACCOUNTS_ONLY,
            visible=sees(
                provider={"match"},
                other_provider=set(),
                buyer={"match"},
                other_buyer=set(),
                anonymous=set(),
                staff={"match"},
            ),
        )
    ],
    ("GET", "/api/v1/matches/{match_id}/"): [
        Row(expect(provider=200, other_provider=404, buyer=200, other_buyer=404, anonymous=401, staff=200), "match")
    ],
    ("POST", "/api/v1/matches/{match_id}/cancel/"): [Row(BUYER_OWNS, target="match")],
    ("GET", "/api/v1/matching-runs/"): [Row(STAFF_ONLY)],
    ("GET", "/api/v1/statements/"): [Row(ORGANISATIONS_ONLY)],
    ("GET", "/api/v1/statements/csv/"): [Row(ORGANISATIONS_ONLY)],
    # vouchers
    ("GET", "/api/v1/vouchers/"): [
        Row(
            BUYERS_ONLY,
            visible=sees(
                provider=set(),
                other_provider=set(),
                buyer={"voucher"},
                other_buyer={"foreign_voucher"},
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/vouchers/claim/"): [Row(BUYERS_ONLY, body=lambda role: {"code": "<free_code>"})],
    ("GET", "/api/v1/voucher-programs/"): [
        Row(
            expect(provider=200, other_provider=200, buyer=403, other_buyer=403, anonymous=401, staff=200),
            visible=sees(
                provider={"promotion"},
                other_provider={"foreign_promotion"},
                buyer=set(),
                other_buyer=set(),
                anonymous=set(),
                staff={"city_program", "promotion", "foreign_promotion"},
            ),
        )
    ],
    ("POST", "/api/v1/voucher-programs/"): [
        Row(
            expect(provider=201, other_provider=201, buyer=403, other_buyer=403, anonymous=401, staff=201),
            body=program_body,
        )
    ],
    ("GET", "/api/v1/voucher-programs/{program_id}/"): [
        Row(PROMOTION, target="promotion"),
        Row(CITY_PROGRAM, target="city_program"),
    ],
    ("PATCH", "/api/v1/voucher-programs/{program_id}/"): [
        Row(PROMOTION, target="promotion", body=lambda role: {"budget": "600"}),
        Row(CITY_PROGRAM, target="city_program", body=lambda role: {"budget": "1200"}),
    ],
    ("GET", "/api/v1/voucher-programs/{program_id}/report/"): [
        Row(PROMOTION, target="promotion"),
        Row(CITY_PROGRAM, target="city_program"),
    ],
    ("GET", "/api/v1/voucher-programs/{program_id}/vouchers/"): [
        Row(PROMOTION, target="promotion"),
        Row(CITY_PROGRAM, target="city_program"),
    ],
    ("POST", "/api/v1/voucher-programs/{program_id}/vouchers/"): [
        Row(created(PROMOTION), target="promotion", body=lambda role: {"count": 2}),
        Row(created(CITY_PROGRAM), target="city_program", body=lambda role: {"count": 2, "buyer": "Huangpu Chat AI"}),
    ],
    # the organisation itself: any member reads it, owners manage it (all the matrix's users own
    # their organisation; staff act for none)
    ("GET", "/api/v1/organisation/"): [Row(ORGANISATIONS_ONLY)],
    ("PATCH", "/api/v1/organisation/"): [Row(ORGANISATIONS_ONLY, body=lambda role: {"monthly_spend_cap": "5000"})],
    ("GET", "/api/v1/api-keys/"): [
        Row(
            ORGANISATIONS_ONLY,
            visible=sees(
                provider=set(),
                other_provider=set(),
                buyer={"api_key"},
                other_buyer={"foreign_api_key"},
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/api-keys/"): [
        Row(created(ORGANISATIONS_ONLY), body=lambda role: {"name": f"{role}'s new key", "scopes": ["read"]})
    ],
    ("GET", "/api/v1/api-keys/{key_id}/"): [Row(BUYERS_OWN_ORGANISATION, target="api_key")],
    ("DELETE", "/api/v1/api-keys/{key_id}/"): [Row(BUYERS_OWN_ORGANISATION, target="api_key")],
    ("GET", "/api/v1/members/"): [
        Row(
            ORGANISATIONS_ONLY,
            visible=sees(
                provider=set(),
                other_provider=set(),
                buyer={"member"},
                other_buyer=set(),
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/members/"): [Row(created(ORGANISATIONS_ONLY), body=member_body)],
    # provider agents (sessions hold every scope; keys without "agent" are in tests/marketplace/test_agents.py)
    ("GET", "/api/v1/agent/listings/"): [
        Row(
            PROVIDER_LISTS,
            visible=sees(
                provider={"listing"},
                other_provider={"foreign_listing"},
                buyer=set(),
                other_buyer=set(),
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("GET", "/api/v1/agent/assignments/"): [
        Row(
            PROVIDER_LISTS,
            visible=sees(
                provider={"match"},
                other_provider=set(),
                buyer=set(),
                other_buyer=set(),
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/agent/matches/{match_id}/ready/"): [
        Row(
            PROVIDER_OWNS,
            target="match",
            body=lambda role: {"endpoint": "https://ningxia-zhongwei.example-provider.invalid/v1/matches/1"},
        )
    ],
    ("POST", "/api/v1/agent/heartbeats/"): [
        Row(PROVIDER_OWNS, body=lambda role: {"listing": "<listing>", "nodes": {"0": "ok", "1": "ok"}})
    ],
    ("GET", "/api/v1/members/{member_id}/"): [Row(BUYERS_OWN_ORGANISATION, target="member")],
    ("PATCH", "/api/v1/members/{member_id}/"): [
        Row(BUYERS_OWN_ORGANISATION, target="member", body=lambda role: {"role": "owner"})
    ],
    # webhooks: any member reads its organisation's endpoints, owners manage them (staff act for none)
    ("GET", "/api/v1/webhooks/"): [
        Row(
            ORGANISATIONS_ONLY,
            visible=sees(
                provider={"provider_webhook"},
                other_provider=set(),
                buyer={"webhook"},
                other_buyer=set(),
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/webhooks/"): [
        Row(
            created(ORGANISATIONS_ONLY),
            body=lambda role: {"url": "https://93.184.216.34/new", "events": ["request.matched"]},
        )
    ],
    ("GET", "/api/v1/webhooks/{endpoint_id}/"): [Row(BUYERS_OWN_WEBHOOK, target="webhook")],
    ("PATCH", "/api/v1/webhooks/{endpoint_id}/"): [
        Row(BUYERS_OWN_WEBHOOK, target="webhook", body=lambda role: {"events": ["match.completed"]})
    ],
    ("DELETE", "/api/v1/webhooks/{endpoint_id}/"): [
        Row(
            expect(provider=404, other_provider=404, buyer=204, other_buyer=404, anonymous=401, staff=403),
            target="webhook",
        )
    ],
    ("GET", "/api/v1/webhooks/{endpoint_id}/deliveries/"): [
        Row(
            BUYERS_OWN_WEBHOOK,
            target="webhook",
            visible=sees(
                provider=set(),
                other_provider=set(),
                buyer={"webhook_delivery"},
                other_buyer=set(),
                anonymous=set(),
                staff=set(),
            ),
        )
    ],
    ("POST", "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver/"): [
        Row(
            expect(provider=404, other_provider=404, buyer=202, other_buyer=404, anonymous=401, staff=403),
            target="webhook_delivery",
        )
    ],
    ("DELETE", "/api/v1/members/{member_id}/"): [
        Row(
            expect(provider=404, other_provider=404, buyer=204, other_buyer=404, anonymous=401, staff=403),
            target="member",
        )
    ],
}

CASES = [
    pytest.param(method, path, row, role, id=f"{method} {path.removeprefix(API)} {row.target or ''} {role}")
    for (method, path), rows in MATRIX.items()
    for row in rows
    for role in ROLES
]


# --- the matrix covers the API ------------------------------------------------------------------


def route_operations() -> set[tuple[str, str]]:
    """(METHOD, path) of every method every API route's view implements."""
    operations = set()
    for route in api_routes:
        assert isinstance(route, URLPattern), route
        path = API + "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(route.pattern))
        view = route.callback.view_class
        methods = {m for m in view.http_method_names if hasattr(view, m)} - {"options", "head"}
        operations |= {(method.upper(), path) for method in methods}
    return operations


def test_the_schema_documents_every_route():
    """Nothing the API serves is missing from the schema (so from the matrix and schemathesis)."""
    assert route_operations() == OPERATIONS


def test_every_operation_has_a_row():
    missing = OPERATIONS - set(MATRIX)
    assert not missing, f"operations without a row in the permission matrix: {sorted(missing)}"
    assert not set(MATRIX) - OPERATIONS, "rows for operations the API no longer has"
    for (method, path), rows in MATRIX.items():
        for row in rows:
            assert set(row.expected) == set(ROLES), (method, path)
            assert (row.target is None) == ("{" not in path), (method, path, "a target fills the path")


# --- calling it ---------------------------------------------------------------------------------


def target_id(market, name: str | None):
    if name == "region":
        return "shanghai"
    if name == "webhook_delivery":  # two parameters: its endpoint, then itself
        return (market.webhook_delivery.endpoint_id, market.webhook_delivery.pk)
    return getattr(market, name).pk


def url_of(market, path: str, row: Row, *, missing: bool = False) -> str:
    """The row's URL; ``missing``: the same with an id (or code) that exists for nobody."""
    if row.target is not None:
        value = ("atlantis" if row.target == "region" else 10**9) if missing else target_id(market, row.target)
        values = iter(value if isinstance(value, tuple) else [value] * path.count("{"))
        path = re.sub(r"\{\w+\}", lambda _: str(next(values)), path)
    return f"{path}?{row.query}" if row.query else path


def body_of(market, row: Row, role: str) -> dict | None:
    if row.body is None:
        return None
    body = row.body(role)
    placeholders = {"<free_code>": market.free_code, "<listing>": market.listing.pk}
    return {key: placeholders.get(value, value) if isinstance(value, str) else value for key, value in body.items()}


def call(client, method: str, url: str, body: dict | None = None, **extra):
    return getattr(client, method.lower())(url, body, format="json", **extra)


#: Every table a call could write to: the marketplace's, users and tokens. A refused call, and any
#: read, must leave them as they were.
WATCHED_MODELS = (*apps.get_app_config("marketplace").get_models(include_auto_created=True), get_user_model(), Token)


def database_state() -> dict[str, list[dict]]:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in WATCHED_MODELS}


@pytest.mark.parametrize(("method", "path", "row", "role"), CASES)
def test_permission_matrix(market, callers, method, path, row, role):
    """The role gets its status; a refusal (or a read) writes nothing; a list shows the role what
    it may see; and a refusal about an object is the very answer an unknown id gets (no status
    or message tells a caller that another party's object exists)."""
    before = database_state()
    body = body_of(market, row, role)
    response = call(callers[role], method, url_of(market, path, row), body)
    expected = row.expected[role]
    assert response.status_code == expected, (method, path, row.target, role, response.content[:300])
    FIGURES["matrix"][f"{response.status_code}"] += 1
    if response.status_code >= 400 or method == "GET":
        assert database_state() == before, "a refused call, or a read, wrote to the database"
    if row.visible and response.status_code == 200:
        assert visible_names(market, path, response.json()["results"]) == row.visible[role]
    if row.target is not None and response.status_code >= 400:
        unknown = call(callers[role], method, url_of(market, path, row, missing=True), body)
        assert (response.status_code, response.content) == (unknown.status_code, unknown.content)
        FIGURES["matrix"]["refusals compared with an unknown id"] += 1


#: The kind of object each list shows.
LIST_KINDS = {
    "/api/v1/listings/": Listing,
    "/api/v1/requests/": BuyerRequest,
    "/api/v1/matches/": Match,
    "/api/v1/vouchers/": Voucher,
    "/api/v1/voucher-programs/": VoucherProgram,
    "/api/v1/api-keys/": ApiKey,
    "/api/v1/members/": Membership,
    "/api/v1/webhooks/": WebhookEndpoint,
    "/api/v1/webhooks/{endpoint_id}/deliveries/": WebhookDelivery,
    "/api/v1/agent/listings/": Listing,
    "/api/v1/agent/assignments/": Match,
}


def visible_names(market, path: str, results: list[dict]) -> set[str]:
    """The market objects (by their name in ``Market``) among a list's results."""
    kind = LIST_KINDS[path]
    names = {obj.pk: name for name, obj in vars(market).items() if isinstance(obj, kind)}
    return {names[item["id"]] for item in results if item["id"] in names}


# --- mass assignment ----------------------------------------------------------------------------

WRITES = sorted(operation for operation in OPERATIONS if operation[0] in {"POST", "PATCH", "PUT", "DELETE"})
#: Columns that differ between two identical calls (fresh ids, random codes, hashes, clocks).
VARYING = frozenset(
    {
        *("id", "key", "code", "token", "password", "created_at", "updated_at", "date_joined", "last_login", "created"),
        *("prefix", "secret", "secret_sha256"),  # an API key's, random each time
        *("event_id", "payload", "next_attempt_at", "changed_at"),  # a webhook event's id and timestamps
    }
)
#: Fields that are not in any response but name privileges or money, sent to every writing call.
EXTRA_HOSTILE_NAMES = (
    "owner",
    "user",
    "user_id",
    "provider_id",
    "buyer_id",
    "organisation_id",
    "sponsor_provider_id",
    "is_staff",
    "is_superuser",
    "allocated_gpus",
    "failed_nodes",
    "remaining_budget",
    "balance",
    "spent",
    "matched_replicas",
    "priority",
    "run",
    "matching_run",
)


def resolve(fragment: dict) -> dict:
    while "$ref" in fragment:
        fragment = SCHEMA["components"]["schemas"][fragment["$ref"].rsplit("/", 1)[-1]]
    if fragment.get("type") == "array":
        return resolve(fragment["items"])
    return fragment


def request_fields(method: str, path: str) -> set[str]:
    body = SCHEMA["paths"][path][method.lower()].get("requestBody")
    return set(resolve(body["content"]["application/json"]["schema"]).get("properties", {})) if body else set()


def response_properties(method: str, path: str) -> dict[str, dict]:
    responses = SCHEMA["paths"][path][method.lower()]["responses"]
    (success,) = (response for status, response in responses.items() if status.startswith("2"))
    content = success.get("content", {}).get("application/json")
    return resolve(content["schema"]).get("properties", {}) if content else {}


def hostile_value(name: str, schema: dict, natural: Any, market) -> Any:
    """A value a client might try to smuggle into ``name``: valid-looking, never the natural one."""
    schema = resolve(schema) if "$ref" in schema else schema
    options = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if options:
        schema = resolve(options[0])
    if "enum" in schema:
        others = [value for value in schema["enum"] if value not in (natural, None, "")]
        return others[-1] if others else natural
    if schema.get("format") == "date-time":
        return "2001-01-01T00:00:00Z"
    kind = schema.get("type")
    if kind == "integer":
        return 987654
    if kind == "number":
        return 987654.5
    if kind == "boolean":
        return not natural if isinstance(natural, bool) else True
    if kind == "array":
        return [market.other_provider.name]
    if kind == "object":
        return {"hostile": True}
    if schema.get("format") == "decimal" or "pattern" in schema:
        return "987654.0000"
    return market.other_provider.name if "buyer" not in name else market.other_buyer.name


def extra_hostile(name: str, market) -> Any:
    if name.startswith("is_"):
        return True
    if name.endswith("_id") or name in ("user", "owner", "run", "matching_run"):
        return market.other_provider.pk
    if name == "failed_nodes":
        return [0, 1]
    return 987654


def actor_of(method: str, path: str) -> tuple[Row, str]:
    """The first row and role that may make this call: the owner, or whoever may."""
    for row in MATRIX[(method, path)]:
        for role in ("provider", "buyer", "staff", "other_provider", "other_buyer", "anonymous"):
            if row.expected[role] < 300:
                return row, role
    raise AssertionError(f"nobody may call {method} {path}")


class Rollback(Exception):
    pass


def normalised(value: Any, now: datetime) -> Any:
    """``value`` with what two identical calls may differ in blanked: clock readings and the ids of
    rows each call creates (``new_ids``)."""
    if isinstance(value, dict):
        return {key: "*" if key in VARYING else normalised(item, now) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalised(item, now) for item in value]
    moment = value if isinstance(value, datetime) else parse_datetime(value) if isinstance(value, str) else None
    if moment is not None and abs(moment - now) < timedelta(minutes=5):
        return "≈now"
    return value


def changes(before: dict, after: dict, now: datetime) -> dict[str, list]:
    """What a call wrote, table by table: new and changed rows, normalised, references to rows
    the call created replaced by a placeholder (their ids differ between calls)."""
    old_ids = {table: {row["id"] for row in rows if "id" in row} for table, rows in before.items()}
    result = {}
    for model in WATCHED_MODELS:
        table = model.__name__
        previous = {json.dumps(row, default=str, sort_keys=True) for row in before[table]}
        written = []
        for row in after[table]:
            if json.dumps(row, default=str, sort_keys=True) in previous:
                continue
            for model_field in model._meta.concrete_fields:
                value = row.get(model_field.attname)
                target = model_field.related_model
                if target in WATCHED_MODELS and value is not None and value not in old_ids[target.__name__]:
                    row = {**row, model_field.attname: "new"}
            written.append(normalised(row, now))
        result[table] = sorted(written, key=lambda row: json.dumps(row, default=str, sort_keys=True))
    return result


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p.removeprefix(API)}" for m, p in WRITES])
def test_read_only_fields_cannot_be_mass_assigned(market, callers, method, path):
    """Send the actor's valid call twice: as is, then with every read-only field set to a hostile
    value. The second is answered (2xx, or a 400 writing nothing) and stores exactly what the first
    does: the same rows, the same columns, the same answer."""
    row, role = actor_of(method, path)
    url, body = url_of(market, path, row), body_of(market, row, role) or {}
    now = timezone.now()
    market_clock_freeze(at=now)  # both calls settle the same hours, whenever each one runs
    before = database_state()
    try:
        with transaction.atomic():
            clean = call(callers[role], method, url, body or None)
            clean_changes = changes(before, database_state(), now)
            raise Rollback
    except Rollback:
        pass
    assert clean.status_code < 300, (method, path, role, clean.content[:300])
    assert database_state() == before
    natural = clean.json() if clean.content and clean["Content-Type"].startswith("application/json") else {}
    natural = natural[0] if isinstance(natural, list) else natural
    writable = request_fields(method, path)
    hostile = {
        name: hostile_value(name, schema, natural.get(name), market)
        for name, schema in response_properties(method, path).items()
        if name not in writable
    } | {name: extra_hostile(name, market) for name in EXTRA_HOSTILE_NAMES if name not in writable}
    attacked = call(callers[role], method, url, {**body, **hostile})
    FIGURES["mass assignment"]["writing operations"] += 1
    FIGURES["mass assignment"]["hostile fields sent"] += len(hostile)
    if attacked.status_code == 400:
        assert database_state() == before, "a rejected call wrote"
        return
    assert attacked.status_code == clean.status_code, attacked.content[:300]
    assert changes(before, database_state(), now) == clean_changes, f"read-only fields took: {sorted(hostile)}"
    if clean.content and clean["Content-Type"].startswith("application/json"):
        assert normalised(attacked.json(), now) == normalised(clean.json(), now)


# --- quotas -------------------------------------------------------------------------------------


def test_a_request_may_ask_for_4096_gpus_and_no_more(market, callers):
    body = {**request_body("buyer"), "gpus_per_replica": 8, "replicas": 512}
    assert call(callers["buyer"], "POST", f"{API}/requests/", body).status_code == 201
    too_many = call(callers["buyer"], "POST", f"{API}/requests/", {**body, "replicas": 513})
    assert too_many.status_code == 400
    assert "replicas" in too_many.json()
    assert not BuyerRequest.objects.filter(replicas=513).exists()


def open_requests(buyer) -> int:
    return BuyerRequest.objects.filter(buyer=buyer, status__in=BuyerRequest.OPEN_STATUSES).count()


def test_the_open_request_quota_is_per_buyer_and_frees_up_on_cancel(market, callers, settings):
    """At its quota a buyer's next request is a 429 that writes nothing; another buyer is not held
    back by it; cancelling one of its open requests lets the next one in."""
    settings.MAX_OPEN_REQUESTS_PER_BUYER = max(open_requests(market.buyer), open_requests(market.other_buyer)) + 1

    def submit(role: str):
        return call(callers[role], "POST", f"{API}/requests/", request_body(role))

    accepted = [submit("buyer") for _ in range(settings.MAX_OPEN_REQUESTS_PER_BUYER - open_requests(market.buyer))]
    assert [response.status_code for response in accepted] == [201] * len(accepted)
    assert accepted
    count = BuyerRequest.objects.count()
    refused = submit("buyer")
    assert refused.status_code == 429
    assert "non_field_errors" in refused.json()
    assert BuyerRequest.objects.count() == count
    assert submit("other_buyer").status_code == 201
    assert call(callers["buyer"], "POST", f"{API}/requests/{accepted[0].json()['id']}/cancel/").status_code == 200
    assert submit("buyer").status_code == 201
    assert submit("buyer").status_code == 429


# --- sign-up --------------------------------------------------------------------------------------


def test_signing_up_cannot_join_an_existing_organisation(market, callers):
    """Sign-up once let anyone join an organisation by typing its name, and act for it. Now an
    existing name (in any case) is refused and the newcomer gets nothing of the organisation's."""
    for name in (market.provider.name, market.provider.name.upper()):
        body = {**register_body("anonymous"), "role": "provider", "organisation": name}
        response = call(callers["anonymous"], "POST", f"{API}/auth/register/", body)
        assert response.status_code == 400
        assert "organisation" in response.json()
    assert not get_user_model().objects.filter(username="new-anonymous").exists()
    assert Membership.objects.filter(organisation=market.provider).count() == 1
