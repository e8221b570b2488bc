"""Rounds, GPUs and voucher budgets, read from the database when Prometheus scrapes.

Rounds run in Celery workers, other processes than the web's, so nothing is counted where a round
runs: :class:`MarketCollector` reads the recorded MatchingRun rows and the market's state (a
constant number of queries, ``selectors.metrics``), and every web process reports the same figures.
The runs table only grows, so the round metrics describe a window, the newest
``METRICS_RECENT_ROUNDS`` finished runs: gauges (and a gauge histogram, which may go down as runs
leave the window), not counters.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from django.conf import settings
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from marketplace import selectors
from marketplace.market_time import market_now
from marketplace.models import MatchingRun
from marketplace.selectors.metrics import RoundRecord
from marketplace.selectors.webhooks import webhook_delivery_counts

#: The phases a round records in ``MatchingRun.timings_ms`` (``services.rounds``), in order.
ROUND_PHASES = ("snapshot", "solve", "prices", "apply")
#: Upper bounds (seconds) of the round phase histogram's buckets: a phase takes milliseconds on a
#: small shard and seconds on a big one; the soft time limit (120 s) caps the whole round.
ROUND_PHASE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class MarketCollector(Collector):
    """The ``marketplace_round_*``, ``marketplace_*_gpus``, ``marketplace_voucher_*`` and
    ``marketplace_webhook_deliveries`` metrics. Five queries per scrape (the market clock, the runs,
    the listings, the programmes, the webhook deliveries)."""

    def collect(self) -> Iterator[Metric]:
        runs = selectors.rounds_recent(limit=settings.METRICS_RECENT_ROUNDS)
        yield from round_metrics(runs)
        yield from gpu_metrics()
        yield from voucher_metrics()
        yield webhook_metrics()


def round_metrics(runs: Sequence[RoundRecord]) -> Iterator[Metric]:
    """From ``runs`` (newest first): how many by shard and outcome, each phase's durations, and
    the newest succeeded round's served and unserved replicas and gap, by shard."""
    recent = GaugeMetricFamily(
        "marketplace_recent_rounds",
        "Finished matching rounds among the newest METRICS_RECENT_ROUNDS, by shard (GPU model) and outcome.",
        labels=["shard", "status"],
    )
    outcomes: dict[tuple[str, str], int] = defaultdict(int)
    for run in runs:
        outcomes[run.shard, run.status] += 1
    for (shard, status), count in sorted(outcomes.items()):
        recent.add_metric([shard, status], count)
    yield recent
    succeeded = [run for run in runs if run.status == MatchingRun.Status.SUCCEEDED]
    yield phase_durations(succeeded)
    yield from latest_round_outcome(succeeded)


def phase_durations(runs: Sequence[RoundRecord]) -> GaugeHistogramMetricFamily:
    histogram = GaugeHistogramMetricFamily(
        "marketplace_round_phase_duration_seconds",
        "Duration of each phase (snapshot, solve, prices, apply) of the succeeded rounds among the newest "
        "METRICS_RECENT_ROUNDS, by shard.",
        labels=["shard", "phase"],
    )
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        for phase in ROUND_PHASES:
            if phase in run.timings_ms:
                seconds[run.shard, phase].append(float(run.timings_ms[phase]) / 1000)
    for (shard, phase), values in sorted(seconds.items()):
        buckets = [(str(bound), float(sum(value <= bound for value in values))) for bound in ROUND_PHASE_BUCKETS]
        buckets.append(("+Inf", float(len(values))))
        histogram.add_metric([shard, phase], buckets, gsum_value=sum(values))
    return histogram


def latest_round_outcome(runs: Sequence[RoundRecord]) -> Iterator[Metric]:
    """Per shard, the newest of ``runs`` (newest first): what it served, left unserved, its gap."""
    served = GaugeMetricFamily(
        "marketplace_round_served_replicas",
        "Replicas the shard's newest succeeded round placed.",
        labels=["shard"],
    )
    unserved = GaugeMetricFamily(
        "marketplace_round_unserved_replicas",
        "Replicas of open requests the shard's newest succeeded round could not place.",
        labels=["shard"],
    )
    gap = GaugeMetricFamily(
        "marketplace_round_gap_ratio",
        "Relative gap between the shard's newest succeeded round's objective and its lower bound (0: optimal).",
        labels=["shard"],
    )
    finished = GaugeMetricFamily(
        "marketplace_round_finished_timestamp_seconds",
        "When the shard's newest succeeded round finished (Unix time, market clock).",
        labels=["shard"],
    )
    newest: dict[str, RoundRecord] = {}
    for run in runs:
        newest.setdefault(run.shard, run)
    for shard, run in sorted(newest.items()):
        served.add_metric([shard], run.served_replicas)
        unserved.add_metric([shard], run.unserved_replicas)
        if run.gap is not None:
            gap.add_metric([shard], run.gap)
        if run.finished_at is not None:
            finished.add_metric([shard], run.finished_at.timestamp())
    yield from (served, unserved, gap, finished)


def gpu_metrics() -> Iterator[Metric]:
    idle = GaugeMetricFamily(
        "marketplace_idle_gpus",
        "GPUs listed on active, unexpired listings and not allocated to a match, by region and GPU model.",
        labels=["region", "gpu_model"],
    )
    matched = GaugeMetricFamily(
        "marketplace_matched_gpus",
        "GPUs of active, unexpired listings allocated to matches, by region and GPU model.",
        labels=["region", "gpu_model"],
    )
    for row in selectors.gpus_by_region_and_model(now=market_now()):
        idle.add_metric([row.region, row.gpu_model], row.idle_gpus)
        matched.add_metric([row.region, row.gpu_model], row.matched_gpus)
    yield from (idle, matched)


def voucher_metrics() -> Iterator[Metric]:
    budget = GaugeMetricFamily(
        "marketplace_voucher_budget_cny", "A voucher programme's whole budget, in CNY.", labels=["program"]
    )
    left = GaugeMetricFamily(
        "marketplace_voucher_budget_remaining_cny",
        "What is left of a voucher programme's budget (not yet reserved by matches), in CNY.",
        labels=["program"],
    )
    for row in selectors.voucher_budgets():
        budget.add_metric([row.program], float(row.budget))
        left.add_metric([row.program], float(row.remaining_budget))
    yield from (budget, left)


def webhook_metrics() -> GaugeMetricFamily:
    deliveries = GaugeMetricFamily(
        "marketplace_webhook_deliveries",
        "Webhook deliveries by status: pending (to be sent or retried), succeeded, failed (retries spent "
        "or endpoint disabled).",
        labels=["status"],
    )
    for status, count in webhook_delivery_counts().items():
        deliveries.add_metric([status], count)
    return deliveries
