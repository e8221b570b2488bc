"""The SDK in step with the server's OpenAPI schema: every operation it calls exists, with each
query parameter and body field it may send, and every field its typed models read is in the
response schema. A server change that breaks the CLI fails here, not in a user's terminal."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from gpumkt import models
from gpumkt.cli import main
from gpumkt.endpoints import API_PREFIX, ENDPOINTS, Endpoint

#: The response schema each typed model reads: (endpoint, model, path to the object in the answer).
MODELS_READ = [
    ("listing_create", models.Listing, ()),
    ("listing_list", models.Listing, ("results", "items")),
    ("request_submit", models.BuyerRequest, ()),
    ("request_get", models.BuyerRequest, ()),
    ("match_list", models.Match, ("results", "items")),
    ("quote", models.Quote, ()),
    ("quote", models.QuotePlacement, ("placement", "items")),
    ("capacity", models.CapacityRow, ("items",)),
    ("voucher_list", models.Voucher, ("results", "items")),
    ("voucher_claim", models.Voucher, ()),
    ("statement", models.Statement, ()),
    ("statement", models.StatementLine, ("lines", "items")),
    ("token", models.Token, ()),
    ("prices", models.RegionPrice, ("items",)),
    ("price_history", models.PricePoint, ("results", "items")),
    ("listing_guidance", models.Guidance, ()),
    ("llm_models", models.LlmModel, ("results", "items")),
]


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def resolved(schema: dict, node: dict) -> dict:
    """The object schema ``node`` refers to. Of a ``oneOf`` (an operation with two forms, as the
    quote's GPU and inference forms), the first: the form the SDK speaks."""
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "allOf" in node and len(node["allOf"]) == 1:
        return resolved(schema, node["allOf"][0])
    if "oneOf" in node:
        return resolved(schema, node["oneOf"][0])
    return node


def operation(schema: dict, endpoint: Endpoint) -> dict:
    path = schema["paths"].get(API_PREFIX + endpoint.path)
    assert path is not None, f"no path {API_PREFIX + endpoint.path} in the schema"
    assert endpoint.method.lower() in path, f"no {endpoint.method} on {endpoint.path}"
    return path[endpoint.method.lower()]


def sent_parameters():
    for name, endpoint in ENDPOINTS.items():
        for parameter in endpoint.query:
            yield pytest.param(name, parameter, id=f"{name}?{parameter}")


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_every_operation_the_sdk_calls_exists(schema, name):
    endpoint = ENDPOINTS[name]
    found = operation(schema, endpoint)
    if endpoint.creates:
        headers = {p["name"] for p in found.get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in headers, f"{name} creates but the server takes no Idempotency-Key there"


@pytest.mark.parametrize(("name", "parameter"), list(sent_parameters()))
def test_every_query_parameter_the_sdk_sends_exists(schema, name, parameter):
    found = operation(schema, ENDPOINTS[name])
    assert parameter in {p["name"] for p in found.get("parameters", []) if p["in"] == "query"}


@pytest.mark.parametrize("name", [name for name, endpoint in ENDPOINTS.items() if endpoint.body])
def test_every_body_field_the_sdk_sends_exists(schema, name):
    """Each endpoint's fields within one form of the body: the GPU form's or, where the operation has
    two (``oneOf``), the inference form's."""
    endpoint = ENDPOINTS[name]
    body = operation(schema, endpoint)["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    forms = [resolved(schema, member)["properties"] for member in body.get("oneOf", [body])]
    assert any(set(endpoint.body) <= set(properties) for properties in forms), [
        sorted(set(endpoint.body) - set(properties)) for properties in forms
    ]


@pytest.mark.parametrize(("name", "model", "within"), MODELS_READ, ids=[f"{m.__name__}@{n}" for n, m, _ in MODELS_READ])
def test_every_field_a_model_reads_is_in_the_response(schema, name, model, within):
    responses = operation(schema, ENDPOINTS[name])["responses"]
    ok = next(responses[status] for status in ("200", "201") if status in responses)
    node = resolved(schema, ok["content"]["application/json"]["schema"])
    for step in within:
        node = resolved(schema, node["properties"][step] if step != "items" else node["items"])
    missing = set(model.field_names()) - set(node["properties"])
    assert not missing, f"{model.__name__} reads {sorted(missing)}, which {name}'s answer does not have"


def test_the_csv_statement_is_text_csv(schema):
    responses = operation(schema, ENDPOINTS["statement_csv"])["responses"]
    assert "text/csv" in responses["200"]["content"]


#: The CLI's fixed choices and the schema's enum each must equal: (command path, option, enum).
CHOICES = [
    (("listings", "list"), "status", "ListingStatusEnum"),
    (("listings", "list"), "latency_class", "LatencyClassEnum"),
    (("requests",), "status", "RequestStatusEnum"),
    (("matches",), "status", "MatchStatusEnum"),
    (("quote",), "latency_class", "LatencyClassEnum"),
    (("request", "submit"), "latency_class", "LatencyClassEnum"),
]


@pytest.mark.parametrize(("path", "option", "enum"), CHOICES, ids=[f"{' '.join(p)} --{o}" for p, o, _ in CHOICES])
def test_the_clis_choices_are_the_schemas_values(schema, path, option, enum):
    command = main
    for name in path:
        command = command.commands[name]
    (param,) = [p for p in command.params if p.name == option]
    assert list(param.type.choices) == schema["components"]["schemas"][enum]["enum"]
