from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from marketplace import selectors
from marketplace.errors import DomainError
from marketplace.market_time import market_now
from marketplace.models import MatchingRun
from marketplace.services.lifecycle import lifecycle_tick
from marketplace.services.market_clock import market_clock_advance
from marketplace.services.rounds import round_run


class Command(BaseCommand):
    help = (
        "Advance simulated market time by --hours in steps of --step-minutes; at each step run the "
        "lifecycle (start, complete and settle matches, expire requests, close listings) and a "
        "matching round on every shard with open work, printing one line per step."
    )

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=float, required=True, help="how far to move the clock")
        parser.add_argument("--step-minutes", type=float, default=60, help="step size (default 60)")

    def handle(self, *args, hours: float, step_minutes: float, **options):
        if step_minutes <= 0:
            raise CommandError("--step-minutes must be positive")
        steps = max(1, round(hours * 60 / step_minutes))
        for step in range(1, steps + 1):
            try:
                market_clock_advance(by=timedelta(minutes=hours * 60 / steps))
            except DomainError as exc:
                raise CommandError(exc.message) from None
            now = market_now()
            tick = lifecycle_tick(now=now)
            served = sum(self._round(shard) for shard in selectors.shards_with_open_work(now=now))
            self.stdout.write(
                f"[{step}/{steps}] {now:%Y-%m-%d %H:%M} UTC: {tick.started} started, {tick.completed} completed, "
                f"{tick.expired_requests} requests expired, {tick.closed_listings} listings closed, "
                f"{served} replicas matched"
            )

    @staticmethod
    def _round(shard: str) -> int:
        run_id = round_run(shard=shard, trigger=MatchingRun.Trigger.MANUAL)
        return MatchingRun.objects.get(pk=run_id).served_replicas if run_id else 0
