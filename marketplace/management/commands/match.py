from django.core.management.base import BaseCommand, CommandError

from marketplace import selectors
from marketplace.market_time import market_now
from marketplace.models import MatchingRun
from marketplace.services.rounds import round_run


class Command(BaseCommand):
    help = "Run one matching round synchronously (every shard with open work, or --shard) and print it."

    def add_arguments(self, parser):
        parser.add_argument("--shard", help="a GPU model code; default: every one with open requests")

    def handle(self, *args, shard: str | None, **options):
        shards = [shard] if shard else selectors.shards_with_open_work(now=market_now())
        if not shards:
            self.stdout.write("no open requests: nothing to match")
        for code in shards:
            run_id = round_run(shard=code, trigger=MatchingRun.Trigger.MANUAL)
            if run_id is None:
                raise CommandError(f"a round on {code} is running elsewhere; try again shortly")
            self.stdout.write(self._summary(MatchingRun.objects.get(pk=run_id)))

    @staticmethod
    def _summary(run: MatchingRun) -> str:
        timings = ", ".join(f"{phase} {ms:.0f} ms" for phase, ms in run.timings_ms.items())
        lines = [
            f"run #{run.pk} {run.shard}: {run.request_count} requests × {run.listing_count} listings, "
            f"solver {run.solver}, served {run.served_replicas} replicas, unserved {run.unserved_replicas}, "
            f"objective {run.objective} CNY, gap {run.gap:.4%} ({timings})"
        ]
        lines += [f"  unserved request {u['request']} ×{u['replicas']}: {u['reason']}" for u in run.unserved[:10]]
        return "\n".join(lines)
