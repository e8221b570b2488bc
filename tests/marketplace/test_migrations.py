"""Migrations that change data: run from the state before them, on rows written then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("marketplace", "0006_matching_run_running_index")]
DOMAINS = [("marketplace", "0007_market_domains")]
BEFORE_SPONSORS = [("marketplace", "0008_rows_left_out")]
SPONSORS = [("marketplace", "0009_promotion_sponsor_is_its_provider")]


def schema_at(target):
    """The schema as it was at ``target``, and the models of that state; the latest schema after."""
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    yield executor.loader.project_state(target).apps
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def before_domains(transactional_db):
    """Before 0007."""
    yield from schema_at(BEFORE)


def test_the_domain_migration_brings_old_rows_in_and_says_how_many(before_domains, capsys):
    apps, now = before_domains, datetime.now(UTC)
    region, _ = apps.get_model("marketplace", "Region").objects.get_or_create(
        code="ningxia-zhongwei",
        defaults={"name": "Zhongwei", "kind": "hub", "province": "Ningxia", "lat": 37.5, "lon": 105.2,
                  "power_price_cny_kwh": Decimal("0.36"), "pue": Decimal("1.2")},
    )  # fmt: skip
    gpu_model, _ = apps.get_model("marketplace", "GpuModel").objects.get_or_create(
        code="h20", defaults={"name": "H20", "vram_gb": 96, "tdp_w": 400, "indicative_price_per_gpu_hour": Decimal(6)}
    )
    Organisation = apps.get_model("marketplace", "Organisation")
    provider = Organisation.objects.create(name="P", kind="provider")
    buyer = Organisation.objects.create(name="B", kind="buyer")
    Listing = apps.get_model("marketplace", "Listing")
    listing = {"provider": provider, "region": region, "gpu_model": gpu_model, "gpus_per_node": 8}
    far = Listing.objects.create(
        **listing, gpu_count=8, price_per_gpu_hour=Decimal(5), available_from=datetime(9999, 12, 30, tzinfo=UTC),
        available_until=datetime(9999, 12, 31, tzinfo=UTC),
    )  # fmt: skip
    huge = Listing.objects.create(
        **listing, gpu_count=100_000, price_per_gpu_hour=Decimal(5), available_from=now,
        available_until=now + timedelta(days=30),
    )  # fmt: skip
    fine = Listing.objects.create(
        **listing, gpu_count=16, price_per_gpu_hour=Decimal(5), available_from=now,
        available_until=now + timedelta(days=30),
    )  # fmt: skip
    BuyerRequest = apps.get_model("marketplace", "BuyerRequest")
    request = {
        "buyer": buyer, "gpu_model": gpu_model, "gpus_per_replica": 1, "replicas": 1, "origin": region,
        "latency_class": "batch", "duration_hours": 8784,
    }  # fmt: skip
    attack = BuyerRequest.objects.create(
        **request, max_price_per_gpu_hour=Decimal(9), start_by=datetime(9999, 12, 31, tzinfo=UTC)
    )
    dear = BuyerRequest.objects.create(
        **request, max_price_per_gpu_hour=Decimal("1e5"), start_by=now + timedelta(hours=1)
    )
    VoucherProgram = apps.get_model("marketplace", "VoucherProgram")
    program = VoucherProgram.objects.create(
        name="Old", sponsor="City", percent=Decimal(30), budget=Decimal(100), remaining_budget=Decimal(100),
        valid_from=datetime(1, 1, 1, tzinfo=UTC), valid_until=now + timedelta(days=30), min_spend=Decimal(-5),
    )  # fmt: skip

    MigrationExecutor(connection).migrate(DOMAINS)

    status = dict(Listing.objects.values_list("pk", "status"))
    assert (status[far.pk], status[huge.pk], status[fine.pk]) == ("closed", "closed", "active")
    assert BuyerRequest.objects.get(pk=attack.pk).status == "expired"
    assert BuyerRequest.objects.get(pk=dear.pk).max_price_per_gpu_hour == Decimal(1000)
    program = VoucherProgram.objects.get(pk=program.pk)
    assert program.min_spend is None
    assert program.valid_from == datetime(2000, 1, 1, tzinfo=UTC)
    out = capsys.readouterr().out
    assert "closed 2 listings, expired 1 requests, lowered 1 request bounds" in out
    assert "programmes: 1 spends, 0 amounts, 1 windows brought in" in out


@pytest.fixture
def before_sponsors(transactional_db):
    """Before 0009."""
    yield from schema_at(BEFORE_SPONSORS)


def test_the_sponsor_migration_names_each_promotions_provider_and_says_how_many(before_sponsors, capsys):
    """A provider could once claim any sponsor ("Shanghai Municipal Government"); cities' programmes
    (no provider) keep theirs."""
    apps, now = before_sponsors, datetime.now(UTC)
    provider = apps.get_model("marketplace", "Organisation").objects.create(name="Zhongwei DC", kind="provider")
    VoucherProgram = apps.get_model("marketplace", "VoucherProgram")
    terms = {"percent": Decimal(10), "budget": Decimal(100), "remaining_budget": Decimal(100), "valid_from": now}
    terms["valid_until"] = now + timedelta(days=30)
    city = "Shanghai Municipal Government"
    claimed = VoucherProgram.objects.create(name="a", sponsor=city, sponsor_provider=provider, **terms)
    honest = VoucherProgram.objects.create(name="b", sponsor=provider.name, sponsor_provider=provider, **terms)
    citys = VoucherProgram.objects.create(name="c", sponsor=city, **terms)

    MigrationExecutor(connection).migrate(SPONSORS)

    sponsors = dict(VoucherProgram.objects.values_list("pk", "sponsor"))
    assert sponsors == {claimed.pk: "Zhongwei DC", honest.pk: "Zhongwei DC", citys.pk: city}
    assert "now their provider's name: 1" in capsys.readouterr().out


KEYS = [("marketplace", "0010_api_keys_roles_spend_caps")]


@pytest.fixture
def before_keys(transactional_db):
    """Before 0010."""
    yield from schema_at(SPONSORS)


def test_the_roles_migration_makes_every_existing_member_an_owner(before_keys):
    """Every organisation so far has one user, who must keep managing it (its keys, its members)."""
    apps = before_keys
    organisation = apps.get_model("marketplace", "Organisation").objects.create(name="Old buyer", kind="buyer")
    user = apps.get_model("auth", "User").objects.create(username="old-owner")
    apps.get_model("marketplace", "Membership").objects.create(user=user, organisation=organisation)

    MigrationExecutor(connection).migrate(KEYS)

    from marketplace.models import Membership, Organisation

    assert Membership.objects.get(user_id=user.pk).role == "owner"
    assert Organisation.objects.get(pk=organisation.pk).monthly_spend_cap is None


@pytest.fixture
def before_gpu_names(transactional_db):
    """Before 0014."""
    yield from schema_at([("marketplace", "0013_reliability_bound")])


def test_gpu_models_already_stored_get_their_chinese_name_from_the_reference_file(before_gpu_names):
    GpuModel = before_gpu_names.get_model("marketplace", "GpuModel")
    GpuModel.objects.all().delete()
    fields = {"vram_gb": 64, "tdp_w": 400, "indicative_price_per_gpu_hour": Decimal(6)}
    GpuModel.objects.create(code="ascend-910b", name="Huawei Ascend 910B 64GB", **fields)
    GpuModel.objects.create(code="our-own", name="An operator's own model", **fields)
    executor = MigrationExecutor(connection)
    executor.migrate([("marketplace", "0014_gpumodel_name_zh")])
    names = dict(executor.loader.project_state([("marketplace", "0014_gpumodel_name_zh")]).apps
                 .get_model("marketplace", "GpuModel").objects.values_list("code", "name_zh"))  # fmt: skip
    assert names == {"ascend-910b": "华为昇腾 910B 64GB", "our-own": ""}


@pytest.fixture
def before_gpu_speeds(transactional_db):
    """Before 0016."""
    yield from schema_at([("marketplace", "0015_voucher_program_paused")])


def test_gpu_models_already_stored_get_their_speed_from_the_reference_file(before_gpu_speeds):
    GpuModel = before_gpu_speeds.get_model("marketplace", "GpuModel")
    GpuModel.objects.all().delete()
    fields = {"vram_gb": 96, "tdp_w": 400, "indicative_price_per_gpu_hour": Decimal(6)}
    GpuModel.objects.create(code="h20", name="NVIDIA H20 96GB", **fields)
    GpuModel.objects.create(code="a800", name="NVIDIA A800", **fields)
    GpuModel.objects.create(code="our-own", name="An operator's own model", **fields)
    target = [("marketplace", "0016_llm_models_gpu_speed_measured_profiles")]
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    rows = executor.loader.project_state(target).apps.get_model("marketplace", "GpuModel").objects
    speeds = {
        row.code: (row.memory_bandwidth_gbps, row.bf16_tflops, row.fp8_tflops, row.interconnect) for row in rows.all()
    }
    assert speeds == {
        "h20": (4000, Decimal("148.0"), Decimal("296.0"), "nvlink"),
        "a800": (2039, Decimal("312.0"), None, "nvlink"),
        "our-own": (None, None, None, ""),
    }
