from django.conf import settings
from django.core.management.base import BaseCommand

from marketplace.demo import DEMO_PASSWORD, demo_logins_create, demo_market_seed


class Command(BaseCommand):
    help = (
        "Seed a believable market (idempotent): a dozen providers across the hubs, western listings "
        "plentiful and cheap, eastern ones scarce and dear, buyers in the eastern cities. Under "
        "local settings also the logins demo-provider, demo-buyer and demo-admin (password 'demo')."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")

    def handle(self, *args, seed: int, **options):
        summary = demo_market_seed(seed=seed)
        self.stdout.write(
            f"demo market: {summary.providers} providers, {summary.listings} listings "
            f"({summary.gpus} GPUs), {summary.buyers} buyers, {summary.requests} requests, "
            f"{summary.programs} voucher programmes"
        )
        if getattr(settings, "DEMO_LOGINS", False):
            names = demo_logins_create()
            self.stdout.write(f"demo logins ({DEMO_PASSWORD!r}): {', '.join(names)}")
