"""One market-variant run with one of its knobs turned: how the docs/simulation.md "Mechanisms tried"
rows were measured.

    MARKETPLACE_VAR_DIR=/tmp/knobs DATABASE_URL=sqlite:////tmp/knobs/market.sqlite3 CACHE_URL=locmem:// \\
    CELERY_BROKER_URL=memory:// .venv/bin/python manage.py migrate -v0
    ... the same environment ... .venv/bin/python manage.py shell -c "import bench.market_knobs as k; k.main()"

Knobs, from the environment (unset: as the variant has it): ``SCALE`` (``MATCHING_LOOKAHEAD_SCALE``),
``PERIOD`` (``MATCHING_LOOKAHEAD_PERIOD_MINUTES``), ``W_INT`` / ``W_STD`` / ``W_BATCH`` (the latency
weights of interactive, standard and batch work, CNY per ms per GPU-hour), ``STEP`` (the share of the
gap to the suggested price a provider closes, ``providers.REPRICE_STEP``), ``FLOOR`` (the listings'
interruptible floor as a share of their price); ``POLICY`` (default ``market``), ``DAYS`` (3). The
run is the simulation's own (``runner.simulation_run``, seed 2026, from 2026-03-02 00:00 CST) on the
current database, which should be a fresh one; constants are set for this process only. Prints one
line: western and eastern utilisation, GPU-hours served, real-time GPU-hours, violations, price paid.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from decimal import Decimal

from django.test.utils import override_settings

from marketplace.simulation import providers, variants
from marketplace.simulation.runner import SimulationConfig, simulation_run
from matching import costs

START = datetime.fromisoformat("2026-03-02T00:00:00+08:00")


def knobs_set() -> dict:
    """Apply the environment's knobs to this process; returns the settings to override."""
    env = os.environ.get
    for name, cls in (
        ("W_INT", costs.LatencyClass.INTERACTIVE),
        ("W_STD", costs.LatencyClass.STANDARD),
        ("W_BATCH", costs.LatencyClass.BATCH),
    ):
        if env(name):
            costs.DEFAULT_LATENCY_WEIGHT[cls] = Decimal(env(name))
    if env("STEP"):
        providers.REPRICE_STEP = Decimal(env("STEP"))
    if env("FLOOR"):
        feature = variants.FEATURES[variants.INTERRUPTIBLE_BATCH]
        features = dict(variants.FEATURES)
        features[variants.INTERRUPTIBLE_BATCH] = dataclasses.replace(
            feature, interruptible_floor_share=Decimal(env("FLOOR"))
        )
        variants.FEATURES = features
    overrides: dict = {}
    if env("SCALE"):
        overrides["MATCHING_LOOKAHEAD_SCALE"] = Decimal(env("SCALE"))
    if env("PERIOD"):
        overrides["MATCHING_LOOKAHEAD_PERIOD_MINUTES"] = int(env("PERIOD"))
    return overrides


def main() -> dict:
    overrides = knobs_set()
    config = SimulationConfig(
        policy=os.environ.get("POLICY", "market"), days=float(os.environ.get("DAYS", "3")), seed=2026, start=START
    )
    with override_settings(**overrides):
        figures = simulation_run(config)
    util, demand = figures["utilisation"], figures["demand"]
    realtime = demand["by_class"].get("realtime", {}).get("served_gpu_hours", 0)
    print(
        f"west {100 * util['west']:.1f} %  east {100 * util['east']:.1f} %  served {demand['served_gpu_hours']:,.0f}"
        f"  real-time {realtime:,.0f}  violations {figures['latency_violations']}"
        f"  price {figures['avg_price_paid']}  events {figures['events']}"
    )
    return figures
