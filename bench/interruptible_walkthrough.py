"""A pre-emption, start to finish, on a fresh SQLite database: the figures of docs/interruptible.md.

    .venv/bin/python bench/interruptible_walkthrough.py [--notice-seconds 300]

Two Ningxia listings of one 8-GPU H20 node at 6.00 CNY per GPU-hour offer the interruptible tier,
at floors of 2.40 and 3.00. Two interruptible batch requests (1 × 8 GPUs, bids 3.50) fill them; at
2 h 17 min an on-demand request (1 × 8 GPUs, standard from Shanghai, cap 6.00, 3 hours) arrives with
no free GPU left. The market clock is stood at each step (nothing waits in real time), and every
step is the service a worker would run: ``round_run`` (the round) and ``lifecycle_tick`` (the beat).
Prints each step and, at the end, every settlement line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def django_setup(var_dir: str, notice_seconds: int) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        MARKETPLACE_VAR_DIR=var_dir,
        DATABASE_URL=f"sqlite:///{var_dir}/walkthrough.sqlite3",
        CELERY_BROKER_URL="memory://",
        CELERY_TASK_ALWAYS_EAGER="0",
        CACHE_URL="locmem://",
        LOG_LEVEL="WARNING",
        PREEMPT_NOTICE_SECONDS=str(notice_seconds),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_reference", verbosity=0)


def walk(notice_seconds: int) -> None:
    from django.utils import timezone

    from marketplace import services
    from marketplace.models import Match, MatchingRun, Organisation, Settlement
    from marketplace.services.market_clock import market_clock_freeze
    from marketplace.services.rounds import round_run

    t0 = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)

    def at(minutes: int):
        market_clock_freeze(at=t0 + timedelta(minutes=minutes))
        return t0 + timedelta(minutes=minutes)

    def stamp(when) -> str:
        minutes = int((when - t0).total_seconds() // 60)
        return f"T0+{minutes // 60}h{minutes % 60:02d}"

    def show(title: str) -> None:
        print(f"\n{title}")
        for m in Match.objects.select_related("request__buyer").order_by("pk"):
            tier = "interruptible" if m.request.interruptible else "on-demand"
            notice = f", notice ends {stamp(m.preempt_at)}" if m.preempt_at else ""
            print(
                f"  match {m.pk}: {m.request.buyer.name} ({tier}) on listing {m.listing_id} at {m.price_per_gpu_hour}"
                f" · {m.status}{notice}"
            )

    at(0)
    provider = Organisation.objects.create(name="Zhongwei Desert Compute", kind="provider")
    buyers = [Organisation.objects.create(name=name, kind="buyer") for name in ("Batch A", "Batch B", "Chat C")]
    from marketplace.models import GpuModel, Region

    h20, ningxia, shanghai = (
        GpuModel.objects.get(code="h20"),
        Region.objects.get(code="ningxia-zhongwei"),
        Region.objects.get(code="shanghai"),
    )
    listings = [
        services.listing_create(
            provider=provider,
            region=ningxia,
            gpu_model=h20,
            gpu_count=8,
            gpus_per_node=8,
            price_per_gpu_hour=Decimal("6.00"),
            interruptible_floor_price_per_gpu_hour=floor,
            available_from=t0,
            available_until=t0 + timedelta(days=7),
        )
        for floor in (Decimal("2.40"), Decimal("3.00"))
    ]
    print(f"T0 = {t0.isoformat()}; notice {notice_seconds} s; listings {[x.pk for x in listings]} (floors 2.40, 3.00)")

    def submit(buyer, *, interruptible: bool, cap: str, hours: int, latency_class: str, now):
        return services.request_submit(
            buyer=buyer,
            gpu_model=h20,
            gpus_per_replica=8,
            replicas=1,
            origin=shanghai,
            latency_class=latency_class,
            max_price_per_gpu_hour=Decimal(cap),
            duration_hours=hours,
            start_by=now + timedelta(hours=12),
            interruptible=interruptible,
            now=now,
        )

    a = submit(buyers[0], interruptible=True, cap="3.50", hours=24, latency_class="batch", now=t0)
    submit(buyers[1], interruptible=True, cap="3.50", hours=24, latency_class="batch", now=t0)
    round_run(shard="h20", trigger="manual")
    services.lifecycle_tick(now=at(0))
    show("T0+0h00 round and tick: both interruptible requests run, each at its listing's floor")

    now = at(137)
    submit(buyers[2], interruptible=False, cap="6.00", hours=3, latency_class="standard", now=now)
    round_run(shard="h20", trigger="manual")
    show(f"{stamp(now)} on-demand C arrives, no GPU free; the round pre-empts the cheaper interruptible match")
    for entry in MatchingRun.objects.latest("pk").unserved:
        print(f"  the run lists request {entry['request']} unserved: {entry['reason']}")

    notice_end = Match.objects.get(request=a).preempt_at or now
    services.lifecycle_tick(now=at(int((notice_end - t0).total_seconds() // 60)))
    round_run(shard="h20", trigger="manual")
    show(f"{stamp(notice_end)} the notice ends: the tick ends it as preempted; the round places C, then nothing for A")
    a.refresh_from_db()
    print(f"  request of Batch A: {a.status}, {a.matched_replicas} of {a.replicas} replicas placed")

    c_end = Match.objects.get(request__buyer=buyers[2]).ends_at
    services.lifecycle_tick(now=at(int((c_end - t0).total_seconds() // 60)))
    round_run(shard="h20", trigger="manual")
    show(f"{stamp(c_end)} C completes; the next round places A again on the freed GPUs")

    services.lifecycle_tick(now=at(36 * 60))
    show("T0+36h00 everything has ended")
    print("\nSettlement lines (CNY; GPU-hours to four places, amounts to the fen):")
    print(
        f"  {'match':>5} {'buyer':<8} {'status':<10} {'price':>6} {'from':>8} {'to':>8} {'GPU-h':>9} "
        f"{'gross':>8} {'fee':>6} {'provider':>9} {'buyer pays':>10}"
    )
    for line in Settlement.objects.select_related("match__request__buyer").order_by("match_id"):
        m = line.match
        start = max(m.ready_at or m.starts_at, m.starts_at)
        print(
            f"  {m.pk:>5} {m.request.buyer.name:<8} {m.status:<10} {line.price_per_gpu_hour:>6} {stamp(start):>8} "
            f"{stamp(line.settled_at):>8} {line.gpu_hours:>9} {line.gross:>8} {line.platform_fee:>6} "
            f"{line.provider_earns:>9} {line.buyer_pays:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notice-seconds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as var_dir:
        django_setup(var_dir, args.notice_seconds)
        walk(args.notice_seconds)


if __name__ == "__main__":
    main()
