"""The simulation drives the real services and rounds: repeatable for a seed, and the figures hold."""

from datetime import datetime
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import F

from marketplace import demo
from marketplace.models import BuyerRequest, Listing, Match
from marketplace.services import reference_read
from marketplace.services.reference import WESTERN_PROVINCES
from marketplace.simulation.report import report_write, summary_table
from marketplace.simulation.runner import SimulationConfig, simulation_run
from marketplace.simulation.scenario import Catalogue, Submit, script_build
from marketplace.simulation.variants import MARKET, VARIANTS
from matching.policies import CHEAPEST, ENGINE, NEAREST

START = datetime.fromisoformat("2026-03-02T00:00:00+08:00")
SMALL = {"seed": 11, "days": 0.25, "step_minutes": 60, "scale": 0.25, "start": START}

pytestmark = pytest.mark.django_db


def _run_rolled_back(**overrides) -> dict:
    """One small run whose rows are rolled back afterwards, so the next run starts fresh too."""
    with transaction.atomic():
        figures = simulation_run(SimulationConfig(**{**SMALL, **overrides}))
        transaction.set_rollback(True)
    figures.pop("timings")  # wall-clock seconds: the only part that may differ
    return figures


@pytest.fixture(scope="module")
def runs(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return {policy: _run_rolled_back(policy=policy) for policy in VARIANTS}


def test_a_seed_gives_the_same_figures_twice(runs):
    assert _run_rolled_back(policy=ENGINE) == runs[ENGINE]


def test_a_small_run_completes_and_leaves_nothing_live(runs):
    engine = runs[ENGINE]
    assert engine["events"]["requests"] >= 5
    assert engine["matches"] > 0
    assert engine["demand"]["served_replicas"] > 0
    assert engine["settled_gpu_hours"] == engine["demand"]["served_gpu_hours"]


def test_every_policy_replays_the_same_demand(runs):
    asked = {p: (o["events"]["requests"], o["demand"]["replicas"], o["demand"]["gpu_hours"]) for p, o in runs.items()}
    assert len(set(asked.values())) == 1, asked


def test_our_engine_breaks_no_latency_bound_and_serves_at_least_cheapest_first(runs):
    assert runs[ENGINE]["latency_violations"] == 0
    assert runs[ENGINE]["demand"]["served_replicas"] >= runs[CHEAPEST]["demand"]["served_replicas"]


def test_the_baselines_and_the_market_variant_break_no_latency_bound_either(runs):
    assert runs[NEAREST]["latency_violations"] == 0
    assert runs[CHEAPEST]["latency_violations"] == 0
    assert runs[MARKET]["latency_violations"] == 0


@pytest.mark.parametrize("policy", [NEAREST, CHEAPEST])
def test_the_baselines_respect_capacity_price_and_windows_in_the_database(policy):
    with transaction.atomic():
        simulation_run(SimulationConfig(**{**SMALL, "policy": policy, "days": 0.125}))
        for listing in Listing.objects.all():
            assert 0 <= listing.allocated_gpus <= listing.gpu_count
        for match in Match.objects.select_related("request", "listing"):
            assert match.price_per_gpu_hour <= match.request.max_price_per_gpu_hour
            assert match.listing.available_from <= match.starts_at
            assert match.ends_at <= match.listing.available_until
            assert match.request.gpu_model_id == match.listing.gpu_model_id
        assert not BuyerRequest.objects.filter(matched_replicas__gt=F("replicas")).exists()
        transaction.set_rollback(True)


def test_the_script_is_pure_and_seeded():
    data = reference_read()
    catalogue = Catalogue(
        indicative_price={m["code"]: Decimal(str(m["indicative_price_cny_per_gpu_hour"])) for m in data["gpu_models"]},
        is_west={r["code"]: r["province"] in WESTERN_PROVINCES for r in data["regions"]},
        rtt_ms={(a, b): v for a, row in data["rtt_ms"].items() for b, v in row.items()},
    )
    kwargs = {"start": START, "days": 1, "step_minutes": 30, "scale": 1, "catalogue": catalogue}
    one = script_build(seed=5, providers=demo.PROVIDERS, **kwargs)
    assert one.steps == script_build(seed=5, providers=demo.PROVIDERS, **kwargs).steps
    assert one.steps != script_build(seed=6, providers=demo.PROVIDERS, **kwargs).steps
    evening = sum(isinstance(e, Submit) and e.latency_class == "realtime" for e in one.steps[40])  # 20:00 CST
    night = sum(isinstance(e, Submit) and e.workload == "batch" for s in one.steps[44:48] + one.steps[:4] for e in s)
    assert evening >= 1
    assert night >= 1


def test_the_report_has_the_tables_and_plots(runs, tmp_path):
    written = report_write(runs, tmp_path, command="manage.py simulate --policy all --days 0.25 --seed 11")
    page = (tmp_path / "README.md").read_text()
    assert "| latency-bound violations |" in page
    assert "What drives the differences" in page
    assert "## Targets (issue 16)" in page
    assert "engine with market features" in page
    assert all(path.exists() and path.stat().st_size > 0 for path in written)
    assert "nearest region first" in summary_table(runs)
