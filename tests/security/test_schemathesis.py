"""Schemathesis against the project's own OpenAPI schema, in-process, authenticated as each role.

The schema is the one ``/api/schema/`` serves (drf-spectacular's generator, errors documented by
``marketplace.api.schema``). Every operation is called through the WSGI application with a real
token of a real user, against a database seeded with objects of every party, so generated ids hit
own and foreign listings, requests, matches and programmes as well as ids that exist for nobody.

Every response goes through every schemathesis check — no server error, status code, content type,
body and headers as documented, schema-violating input refused, schema-valid input accepted
(``positive_data_acceptance``). The schema states what it can (decimal ranges as patterns, closed
request bodies, code shapes, enums: ``marketplace.api.schema``), so schema-valid input is answered
with a 2xx, or with what the check allows anyway: 401/403 (who you are), 404 (an id nobody has, or
someone else's), 409 (the object's state), 429.

One allowance more, and only one (:func:`positive_data_acceptance_but_domain_rules`): a 400 (or the
422 of a reused ``Idempotency-Key``) whose body names only inputs whose description in the schema
states a rule the schema cannot, after ``marketplace.api.inputs.DOMAIN_RULE`` — a code no region has
(the regions are rows an operator adds to, not a fixed set), a time outside a window that moves with
now, a password or an e-mail address Django's validators refuse, a name or username taken or
look-alike, a voucher unknown or already claimed, terms that contradict each other (GPUs in whole
nodes, one latency bound, GPUs per request), a key reused with another body — or
``non_field_errors`` where the operation's own description states such a rule (wrong credentials,
a window's order). A 400 naming any other input, or one without ``DOMAIN_RULE`` in its
description, fails the test: the schema should have refused that input itself.

Short run: the fuzzing phase, ``scale(10, 100)`` examples per operation and role, positive and
negative. Long run (LONG_TESTS=1): the explicit-examples and coverage phases too (boundary values of
every parameter). Each pytest test is one operation × role; its examples share one transaction, rolled
back at the end, and since the transaction never commits no matching round is ever enqueued.
Throttles stay on, with rates no run reaches (``conftest.private_throttle_cache``).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from config.wsgi import application
from marketplace.api.inputs import DOMAIN_RULE
from marketplace.models import GpuModel, Region
from tests.conftest import LONG_TESTS, scale
from tests.security.conftest import PASSWORD
from tests.security.figures import FIGURES

#: The kinds of caller. The other provider and buyer see the same operations as these two; what
#: they may see of these parties' objects is the permission matrix's job (test_permission_matrix).
ROLES = ["provider", "buyer", "anonymous", "staff"]


def load_schema():
    # Lazy translation strings and the like become plain JSON, as the served document has them.
    loaded = schemathesis.openapi.from_dict(RAW_SCHEMA)
    loaded.app = application
    loaded.config.generation.update(max_examples=scale(10, 100))
    loaded.config.phases.update(phases=["examples", "coverage", "fuzzing"] if LONG_TESTS else ["fuzzing"])
    return loaded


RAW_SCHEMA = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
schema = load_schema()


# --- schema-valid input refused for a domain rule -----------------------------------------------


def _resolved(node: dict) -> dict:
    while "$ref" in node:
        node = RAW_SCHEMA["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def domain_rules(method: str, path: str) -> set[str]:
    """The inputs of an operation whose description states a domain rule (``DOMAIN_RULE``):
    body fields and query parameters by name, and ``non_field_errors`` if the operation states one."""
    operation = RAW_SCHEMA["paths"][path][method.lower()]
    described = {parameter["name"]: parameter.get("description", "") for parameter in operation.get("parameters", [])}
    for media in operation.get("requestBody", {}).get("content", {}).values():
        body = _resolved(media["schema"])
        # A body of two forms (the quote's GPU and inference forms) is a oneOf: each form's fields.
        for form in [_resolved(variant) for variant in body.get("oneOf", [])] or [body]:
            for name, field in form.get("properties", {}).items():
                described[name] = field.get("description", "")
    described["non_field_errors"] = operation.get("description", "")
    return {name for name, description in described.items() if DOMAIN_RULE in description}


#: 400: an input breaks a domain rule; 422: an ``Idempotency-Key`` was used with another request
#: (its description states that rule, and the examples of one test share their keys' history).
DOMAIN_RULE_STATUSES = frozenset({400, 422})


def positive_data_acceptance_but_domain_rules(ctx, response, case):
    """``positive_data_acceptance``, except for a 400 that names only inputs whose schema
    description states a domain rule (see the module's docstring)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code in DOMAIN_RULE_STATUSES:
            named = set(response.json())
            if named and named <= domain_rules(case.operation.method, case.operation.path):
                return None
        raise


#: Ids and codes of the seeded objects by parameter name; set by ``seeded`` for each test.
KNOWN: dict[str, list] = {}


# --- steering generation towards real objects ---------------------------------------------------
# Random integers and strings almost never name an existing object or a valid region, so on its own
# the fuzzer would see little but 404 and 400. This hook mixes real values in: each generated value
# of a positive (schema-valid) component is kept or (three times as often) swapped for one of the
# market's, so that both the deep paths and the junk get exercised. Negative components are left as
# generated: swapping their values could make them valid, and the negative check would then blame
# the API.


def _mixed_in(values, choices: dict[str, list]):
    if not isinstance(values, dict):
        return st.just(values)
    return st.fixed_dictionaries(
        {
            name: st.sampled_from([value, *choices[name] * 3]) if choices.get(name) else st.just(value)
            for name, value in values.items()
        }
    )


def _reference_choices() -> dict[str, list]:
    regions, gpu_models = KNOWN.get("region", []), KNOWN.get("gpu_model", [])
    soon = timezone.now() + timedelta(days=3)
    return {
        "region": regions,
        "origin": regions,
        "gpu_model": gpu_models,
        "llm_model": ["deepseek-r1-distill-qwen-32b", "qwen3-32b"],
        "code": KNOWN.get("voucher_code", []),
        "voucher_code": KNOWN.get("voucher_code", []),
        "buyer": KNOWN.get("buyer_name", []),
        "username": ["buy"],
        "password": [PASSWORD],
        "nodes": [[1], [0, 1]],
        # listings, requests and programmes have terms that hold together only by chance otherwise
        "gpu_count": [16],
        "gpus_per_node": [8],
        "price_per_gpu_hour": ["6.20"],
        "gpus_per_replica": [2],
        "replicas": [3],
        "max_price_per_gpu_hour": ["9.00"],
        "duration_hours": [24],
        "percent": ["25.00"],
        "budget": ["5000.0000"],
        "valid_from": [soon.isoformat()],
        "valid_until": [(soon + timedelta(days=30)).isoformat()],
    }


def _with(case, values: dict):
    for attribute, value in values.items():
        setattr(case, attribute, value)
    return case


@schema.hook
def flatmap_case(ctx, case):
    choices = {
        "path_parameters": (ParameterLocation.PATH, {**KNOWN, "code": KNOWN.get("region", [])}),
        "query": (ParameterLocation.QUERY, _reference_choices()),
        "body": (ParameterLocation.BODY, _reference_choices()),
    }
    strategies = {
        attribute: _mixed_in(getattr(case, attribute), options)
        for attribute, (location, options) in choices.items()
        if isinstance(getattr(case, attribute), dict) and not (case.meta and case.meta.is_negative_at(location))
    }
    return st.fixed_dictionaries(strategies).map(lambda values: _with(case, values))


# --- the seeded market --------------------------------------------------------------------------


@pytest.fixture
def test_connection_kept_open():
    """The WSGI application ends each request with ``close_old_connections``, which would close the
    test's own database connection (in its open transaction) on PostgreSQL; Django's test client
    keeps it open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(market, tokens, test_connection_kept_open):
    """The market's ids and codes in ``KNOWN``; the headers of each role."""
    KNOWN.clear()
    KNOWN.update(
        listing_id=[market.listing.pk, market.withdrawn.pk, market.foreign_listing.pk],
        request_id=[market.request.pk, market.foreign_request.pk],
        match_id=[market.match.pk],
        program_id=[market.city_program.pk, market.promotion.pk, market.foreign_promotion.pk],
        region=[*Region.objects.values_list("code", flat=True)[:6], "shanghai", "ningxia-zhongwei"],
        gpu_model=list(GpuModel.objects.values_list("code", flat=True)),
        voucher_code=[market.voucher.code, market.foreign_voucher.code, market.free_code],
        buyer_name=[market.buyer.name, market.other_buyer.name],
        endpoint_id=[market.webhook.pk, market.provider_webhook.pk],
        delivery_id=[market.webhook_delivery.pk],
    )
    return tokens


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None, database=None)
def test_the_api_keeps_its_schema(case, role, seeded):
    """No server error, and every answer as the schema documents it, for any input from any role."""
    headers = seeded[role]
    response = case.call(headers=headers)
    phase = case.meta.phase.name.value if case.meta else "explicit"
    FIGURES["schemathesis"][(role, phase, f"{response.status_code // 100}xx")] += 1
    FIGURES["schemathesis_operations"][(role, case.operation.label)] += 1
    if response.status_code < 300:
        FIGURES["schemathesis_2xx_operations"][(role, case.operation.label)] += 1
    case.validate_response(
        response,
        headers=headers,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[positive_data_acceptance_but_domain_rules],
    )
