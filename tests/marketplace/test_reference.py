from decimal import Decimal

from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import RequestFactory

from marketplace import services
from marketplace.models import BuyerRequest, GpuModel, Listing, Organisation, Region, Rtt, VoucherProgram
from matching.latency import LatencyClass, estimate_rtt_ms, great_circle_km, latency_class_of


def test_load_reference_loads_every_region_pair_and_model(db):
    call_command("load_reference")
    assert Region.objects.count() == 21
    assert GpuModel.objects.count() == 8
    assert Rtt.objects.count() == 21 * 21
    assert Rtt.objects.get(source_region__code="shanghai", target_region__code="ningxia-zhongwei").rtt_ms == Decimal(
        "35.8"
    )


def test_load_reference_is_idempotent_and_keeps_measured_rtts(reference):
    measured = Rtt.objects.get(source_region__code="shanghai", target_region__code="anhui-wuhu")
    measured.rtt_ms, measured.source = Decimal("7.5"), Rtt.Source.MEASURED
    measured.save()
    services.reference_load(data=services.reference_read())
    assert Rtt.objects.count() == 21 * 21
    measured.refresh_from_db()
    assert measured.rtt_ms == Decimal("7.5")


def test_western_hubs_are_the_cheap_power_provinces(reference):
    west = set(Region.objects.filter(is_west=True).values_list("code", flat=True))
    assert west == {
        "inner-mongolia-horinger",
        "inner-mongolia-ulanqab",
        "guizhou-guian",
        "gansu-qingyang",
        "ningxia-zhongwei",
    }


def test_the_rtt_model_reproduces_the_reference_matrix(reference):
    data = services.reference_read()
    regions = {row["code"]: row for row in data["regions"]}
    for a, row in data["rtt_ms"].items():
        for b, rtt in row.items():
            if a != b:
                ra, rb = regions[a], regions[b]
                assert estimate_rtt_ms(great_circle_km(ra["lat"], ra["lon"], rb["lat"], rb["lon"])) == rtt


def test_latency_class_bounds_are_inclusive():
    assert latency_class_of(1.0) == LatencyClass.REALTIME
    assert latency_class_of(10.0) == LatencyClass.REALTIME
    assert latency_class_of(10.1) == LatencyClass.INTERACTIVE
    assert latency_class_of(30.0) == LatencyClass.INTERACTIVE
    assert latency_class_of(60.0) == LatencyClass.STANDARD
    assert latency_class_of(60.1) == LatencyClass.BATCH


def test_seed_demo_builds_a_believable_market_idempotently(reference, settings):
    call_command("seed_demo")
    listings = Listing.objects.count()
    call_command("seed_demo")
    assert Listing.objects.count() == listings
    assert Organisation.objects.filter(kind="provider").count() == 13
    assert VoucherProgram.objects.count() == 8  # seven city programmes and the Zhengzhou promotion
    west = Listing.objects.filter(region__is_west=True)
    east = Listing.objects.filter(region__is_west=False)
    assert sum(west.values_list("gpu_count", flat=True)) > 2 * sum(east.values_list("gpu_count", flat=True))
    dearest_west: dict = {}
    for listing in west:
        dearest_west[listing.gpu_model_id] = max(listing.price_per_gpu_hour, dearest_west.get(listing.gpu_model_id, 0))
    assert all(listing.price_per_gpu_hour > dearest_west.get(listing.gpu_model_id, 0) for listing in east)
    assert set(BuyerRequest.objects.values_list("latency_class", flat=True)) == {c.value for c in LatencyClass}
    # Sign-ins pass their request: the sign-in limits (django-axes) count per client address.
    signin = RequestFactory().post("/signin/")
    assert authenticate(signin, username="demo-admin", password="demo").is_staff
    assert authenticate(signin, username="demo-buyer", password="demo").membership.organisation.kind == "buyer"


def test_gpu_models_carry_our_chinese_names_marked_as_translations(reference):
    rows = services.reference_read()["gpu_models"]
    assert all(row["name_zh"] and row["name_zh_is_translation"] is True for row in rows)
    names = dict(GpuModel.objects.values_list("code", "name_zh"))
    assert names["ascend-910b"] == "华为昇腾 910B 64GB"
    assert names["h20"] == "NVIDIA H20 96GB"


def test_load_reference_loads_the_llm_catalogue_and_gpu_speeds_idempotently(db):
    from marketplace.models import LlmModel

    call_command("load_reference")
    call_command("load_reference")
    assert LlmModel.objects.count() == 12
    r1 = LlmModel.objects.get(code="deepseek-r1")
    assert (r1.params_b, r1.active_params_b, r1.layers) == (Decimal(671), Decimal(37), 61)
    assert r1.precisions == ["FP8", "BF16"]
    assert r1.source == "https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/config.json"
    h20 = GpuModel.objects.get(code="h20")
    assert (h20.memory_bandwidth_gbps, h20.bf16_tflops, h20.fp8_tflops, h20.interconnect) == (
        4000, Decimal(148), Decimal(296), "nvlink",
    )  # fmt: skip
    assert GpuModel.objects.get(code="ascend-910b").fp8_tflops is None


def test_every_llm_and_gpu_figure_says_where_it_comes_from():
    data = services.reference_read()
    for row in data["llm_models"]:
        assert row["source"].startswith("https://huggingface.co/"), row["code"]
        shape = {"params_b", "active_params_b", "layers", "kv_heads", "head_dim", "max_context"}
        assert set(row["sourced"]) | set(row["estimated"]) == shape, row["code"]
        assert row["active_params_b"] <= row["params_b"]
    sources = {source["id"] for source in data["sources"]}
    for row in data["gpu_models"]:
        assert row["performance_source"], row["code"]
        assert set(row["performance_source"]) <= sources, row["code"]
        assert isinstance(row["performance_is_estimate"], bool)
        assert row["interconnect"] in {"nvlink", "pcie", "hccs"}
