"""One full matching round on PostgreSQL: snapshot + solve + apply, timed per phase.

    .venv/bin/python bench/bench_round.py [--size 10kx2k] [--seed 7] [--mixed]
        [--database postgres://postgres@127.0.0.1:5432/marketplace_bench]

Creates (drops first) the benchmark database, migrates it, loads the reference data, writes the
same seeded instance as ``bench_matching.py`` as real rows (bulk inserts: this is benchmark set-up,
not a user's action), then runs the round every shard of it gets in production — one per GPU model —
and prints each shard's phases and the total.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_matching import SCALES, default_data_path, generate, load_reference  # noqa: E402


def prepare_database(url: str) -> None:
    """Drop and recreate the database named in ``url`` (connecting to the server's 'postgres' db)."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def django_setup(url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=url,
        CELERY_BROKER_URL="memory://",
        CACHE_URL="locmem://",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_reference", verbosity=0)


def write_instance(problem) -> None:
    """The instance's listings and requests as rows; times shifted so the round sees them open."""
    from django.utils import timezone

    from marketplace.models import BuyerRequest, GpuModel, Listing, Organisation, Region
    from matching.latency import latency_class_of

    shift = timezone.now() - problem.now + timedelta(hours=1)
    regions = {r.code: r for r in Region.objects.all()}
    models = {m.code: m for m in GpuModel.objects.all()}
    provider = Organisation.objects.create(name="bench provider", kind="provider")
    buyer = Organisation.objects.create(name="bench buyer", kind="buyer")
    Listing.objects.bulk_create(
        [
            Listing(
                provider=provider,
                region=regions[spec.region],
                gpu_model=models[spec.gpu_model],
                gpu_count=len(spec.node_free) * spec.gpus_per_node,
                gpus_per_node=spec.gpus_per_node,
                price_per_gpu_hour=spec.price_per_gpu_hour,
                available_from=spec.available_from + shift,
                available_until=spec.available_until + shift,
            )
            for spec in problem.listings
        ],
        batch_size=2000,
    )
    BuyerRequest.objects.bulk_create(
        [
            BuyerRequest(
                buyer=buyer,
                gpu_model=models[spec.gpu_model],
                gpus_per_replica=spec.gpus_per_replica,
                replicas=spec.replicas,
                origin=regions[spec.origin],
                latency_class=latency_class_of(spec.max_rtt_ms or 1e9).value,
                max_rtt_ms=spec.max_rtt_ms,
                latency_weight=spec.latency_weight,
                max_price_per_gpu_hour=spec.max_price_per_gpu_hour,
                duration_hours=spec.duration_hours,
                start_by=spec.start_by + shift,
                priority=spec.priority,
            )
            for spec in problem.requests
        ],
        batch_size=2000,
    )


def _round_in_child(shard: str) -> int:
    from django.db import connections

    from marketplace.services.rounds import round_run

    connections.close_all()  # a forked child must not share the parent's connection
    return round_run(shard=shard, trigger="manual")


def run_round(workers: int) -> None:
    """Every shard's round, ``workers`` at a time (as a Celery worker with that concurrency runs them)."""
    from concurrent.futures import ProcessPoolExecutor

    from django.db import connections
    from django.utils import timezone

    from marketplace import selectors
    from marketplace.models import Match, MatchingRun

    shards = selectors.shards_with_open_work(now=timezone.now())
    connections.close_all()
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        run_ids = list(pool.map(_round_in_child, shards))
    wall = time.perf_counter() - started
    print(
        f"{'shard':<12} {'requests':>8} {'listings':>8} {'served':>7} {'snapshot':>9} {'solve':>8} {'apply':>8}  solver"
    )
    phases = {"snapshot": 0.0, "solve": 0.0, "apply": 0.0}
    for run in MatchingRun.objects.filter(pk__in=run_ids).order_by("shard"):
        t = run.timings_ms
        for phase in phases:
            phases[phase] += t[phase]
        print(
            f"{run.shard:<12} {run.request_count:>8} {run.listing_count:>8} {run.served_replicas:>7} "
            f"{t['snapshot']:>7.0f}ms {t['solve']:>6.0f}ms {t['apply']:>6.0f}ms  {run.solver} (gap {run.gap:.3%})"
        )
    print(
        f"full round: {wall:.2f} s wall for {len(shards)} shards on {workers} worker process(es); "
        f"summed phases: snapshot {phases['snapshot'] / 1000:.2f} s, solve {phases['solve'] / 1000:.2f} s, "
        f"apply {phases['apply'] / 1000:.2f} s; {Match.objects.count()} matches written"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="10kx2k", choices=list(SCALES))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--mixed", action="store_true", help="mixed replica sizes (default: uniform)")
    parser.add_argument("--workers", type=int, default=2, help="shards solved at once (default 2, one per core)")
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marketplace_bench"),
    )
    args = parser.parse_args(argv)
    n_requests, n_listings = SCALES[args.size]
    problem = generate(load_reference(default_data_path()), n_requests, n_listings, args.seed, args.mixed)
    prepare_database(args.database)
    django_setup(args.database)
    write_instance(problem)
    print(f"one full round on PostgreSQL, {args.size} ({'mixed' if args.mixed else 'uniform'} sizes), seed {args.seed}")
    run_round(args.workers)


if __name__ == "__main__":
    main()
