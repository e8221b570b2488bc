"""The LLM catalogue, GPU models' speed, and providers' measured profiles through the API (issue 15)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import MeasuredProfile

API = "/api/v1"
LLM_FIELDS = {
    "code", "name", "params_b", "active_params_b", "layers", "kv_heads", "head_dim", "max_context", "precisions",
    "source",
}  # fmt: skip


def profile_body(**overrides) -> dict:
    body = {
        "llm_model": "deepseek-r1-distill-qwen-32b",
        "precision": "FP8",
        "gpus_per_replica": 1,
        "prompt_tokens": 2000,
        "concurrency": 32,
        "output_tokens_per_second": "900.0",
        "ttft_ms": "800.0",
        "measured_at": (timezone.now() - timedelta(days=1)).isoformat(),
    }
    return {**body, **overrides}


def test_anyone_lists_the_llm_catalogue_paginated_with_its_fields(clients):
    response = clients["anonymous"].get(f"{API}/llm-models/")
    assert response.status_code == 200
    assert response.data["count"] == 12
    row = next(row for row in response.data["results"] if row["code"] == "deepseek-r1")
    assert set(row) == LLM_FIELDS
    assert (row["params_b"], row["active_params_b"], row["layers"]) == ("671.00", "37.00", 61)
    assert row["precisions"] == ["FP8", "BF16"]
    assert clients["anonymous"].get(f"{API}/llm-models/?code=x").status_code == 400  # no filters


def test_gpu_models_show_their_speed(clients):
    rows = {row["code"]: row for row in clients["anonymous"].get(f"{API}/gpu-models/").data["results"]}
    assert rows["h100"]["memory_bandwidth_gbps"] == 3350
    assert (rows["h100"]["bf16_tflops"], rows["h100"]["fp8_tflops"]) == ("989.0", "1979.0")
    assert rows["a100"]["fp8_tflops"] is None
    assert {row["interconnect"] for row in rows.values()} == {"nvlink", "pcie", "hccs"}


def test_the_provider_publishes_and_reads_its_listings_profiles(clients, make_listing):
    listing = make_listing()
    response = clients["provider"].post(f"{API}/listings/{listing.pk}/profiles/", profile_body(), format="json")
    assert response.status_code == 201, response.data
    assert response.data["llm_model"] == "deepseek-r1-distill-qwen-32b"
    assert response.data["output_tokens_per_second"] == "900.0"
    listed = clients["provider"].get(f"{API}/listings/{listing.pk}/profiles/")
    assert listed.status_code == 200
    assert [row["id"] for row in listed.data["results"]] == [response.data["id"]]


def test_nobody_else_reads_or_writes_a_listings_profiles(clients, make_listing):
    listing = make_listing()
    url = f"{API}/listings/{listing.pk}/profiles/"
    assert clients["other_provider"].get(url).status_code == 404
    assert clients["other_provider"].post(url, profile_body(), format="json").status_code == 404
    assert clients["buyer"].post(url, profile_body(), format="json").status_code == 403
    assert clients["anonymous"].get(url).status_code in (401, 403)
    assert clients["provider"].get(f"{API}/listings/999999/profiles/").status_code == 404
    assert not MeasuredProfile.objects.exists()


def test_a_read_only_key_reads_profiles_but_needs_trade_to_publish(clients, provider, make_listing):
    listing = make_listing()
    owner = provider.members.get().user
    key = services.api_key_create(organisation=provider, user=owner, name="bench", scopes=["read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key.secret}")
    url = f"{API}/listings/{listing.pk}/profiles/"
    assert client.get(url).status_code == 200
    response = client.post(url, profile_body(), format="json")
    assert response.status_code == 403
    assert "trade" in str(response.data)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"llm_model": "gpt-5"}, "llm_model"),
        ({"precision": "FP4"}, "precision"),
        ({"llm_model": "glm-4-9b-chat", "precision": "INT4-AWQ"}, "precision"),  # not served at it
        ({"gpus_per_replica": 3}, "gpus_per_replica"),
        ({"prompt_tokens": 0}, "prompt_tokens"),
        ({"concurrency": "8"}, "concurrency"),
        ({"output_tokens_per_second": "0"}, "output_tokens_per_second"),
        ({"output_tokens_per_second": 900}, "output_tokens_per_second"),
        ({"ttft_ms": "-5"}, "ttft_ms"),
        ({"measured_at": "2026-12-01T09:00:00"}, "measured_at"),  # no offset
        ({"measured_at": (timezone.now() + timedelta(days=2)).isoformat()}, "measured_at"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_profiles_are_a_400_naming_the_field(clients, make_listing, overrides, field):
    listing = make_listing()
    response = clients["provider"].post(
        f"{API}/listings/{listing.pk}/profiles/", profile_body(**overrides), format="json"
    )
    assert response.status_code == 400, response.data
    assert field in response.data
    assert not MeasuredProfile.objects.exists()


def test_a_replica_larger_than_the_listings_node_is_refused(clients, make_listing):
    listing = make_listing(gpu_count=16, gpus_per_node=4)
    response = clients["provider"].post(
        f"{API}/listings/{listing.pk}/profiles/", profile_body(gpus_per_replica=8), format="json"
    )
    assert response.status_code == 400
    assert "gpus_per_replica" in response.data


def test_the_database_refuses_non_positive_figures(clients, make_listing):
    from django.db import IntegrityError, transaction

    from marketplace.models import LlmModel

    listing = make_listing()
    fields = {
        "listing": listing, "llm_model": LlmModel.objects.get(code="qwen3-32b"), "precision": "BF16",
        "gpus_per_replica": 1, "prompt_tokens": 100, "concurrency": 1, "output_tokens_per_second": 10,
        "ttft_ms": 100, "measured_at": timezone.now(),
    }  # fmt: skip
    for name in ("prompt_tokens", "concurrency", "output_tokens_per_second", "ttft_ms"):
        with pytest.raises(IntegrityError), transaction.atomic():
            MeasuredProfile.objects.create(**{**fields, name: 0})
    assert not MeasuredProfile.objects.exists()


def test_measured_profiles_reach_the_engine_as_measured_points(clients, make_listing):
    from marketplace import selectors
    from marketplace.services.reference import reference_read
    from matching.inference import GpuSpec, LlmSpec, profile_for

    listing = make_listing()
    clients["provider"].post(f"{API}/listings/{listing.pk}/profiles/", profile_body(), format="json")
    points = selectors.measured_points(listing_ids=[listing.pk])[listing.pk]
    assert [(p.llm_model, p.gpu_model, p.precision, p.output_tokens_per_second) for p in points] == [
        ("deepseek-r1-distill-qwen-32b", "h20", "FP8", 900.0)
    ]
    data = reference_read()
    llm_row = next(row for row in data["llm_models"] if row["code"] == "deepseek-r1-distill-qwen-32b")
    gpu_row = next(row for row in data["gpu_models"] if row["code"] == "h20")
    llm = LlmSpec(llm_row["code"], 32.8, 32.8, 64, 8, 128, 131072, tuple(llm_row["precisions"]))
    gpu = GpuSpec("h20", gpu_row["vram_gb"], 4000, 148, 296, "nvlink")
    profile = profile_for(llm, gpu, 1, "FP8", prompt_tokens=1000, output_tokens=500, measured=points)
    assert (profile.source, profile.tokens_per_second, profile.ttft_ms) == ("measured", 900.0, 800.0)
