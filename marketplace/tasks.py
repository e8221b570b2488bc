"""Celery tasks: a few lines each that take ids or JSON and call a service.

Tasks are idempotent (a repeated round finds less open work and does less) and enqueued by name
after a commit (``services.triggers``). The names are explicit, so moving this module never
orphans a queued message or the beat schedule. The names these tasks had when they lived in
``matching.tasks`` stay registered as aliases for one release, so that messages queued by the
previous version still run after an upgrade; remove them in the release after.
"""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from marketplace.market_time import market_now
from marketplace.selectors.webhooks import webhook_deliveries_due
from marketplace.services.prices import clearing_prices_prune
from marketplace.services.rounds import round_run, rounds_sweep
from marketplace.services.triggers import MATCHING_ROUND_TASK, matching_round_enqueue
from marketplace.services.webhooks import WEBHOOK_DELIVER_TASK, webhook_deliveries_enqueue, webhook_delivery_attempt

MATCHING_SWEEP_TASK = "marketplace.matching_sweep"
WEBHOOKS_SWEEP_TASK = "marketplace.webhooks_sweep"
PRICES_PRUNE_TASK = "marketplace.prices_prune"


class ShardBusy(Exception):
    """Another round holds this shard; retried so that the triggering commit is not missed."""


ROUND_OPTIONS = {
    "bind": True,
    "autoretry_for": (ShardBusy, SoftTimeLimitExceeded),
    "retry_backoff": 1,
    "retry_backoff_max": 30,
    "max_retries": 8,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


def _matching_round(self, *, shard: str, trigger: str = "commit") -> int:
    """One round over ``shard`` (a GPU model code); retried with backoff while the shard is busy
    and after a round aborted at its soft time limit (its run recorded failed, nothing applied).
    After the last retry the beat sweep still runs the shard: the database holds the work."""
    run_id = round_run(shard=shard, trigger=trigger)
    if run_id is None:
        raise ShardBusy(shard)
    return run_id


def _matching_sweep() -> list[str]:
    """Beat's sweep: the lifecycle moves on, and every shard that needs a round gets one."""
    shards = rounds_sweep(now=market_now())
    for shard in shards:
        matching_round_enqueue(shard=shard, trigger="sweep")
    return shards


matching_round = shared_task(name=MATCHING_ROUND_TASK, **ROUND_OPTIONS)(_matching_round)
matching_sweep = shared_task(name=MATCHING_SWEEP_TASK, acks_late=True)(_matching_sweep)


@shared_task(name=WEBHOOK_DELIVER_TASK, acks_late=True)
def webhook_deliver(delivery_id: int) -> None:
    """Send one webhook delivery if it is due (idempotent: see ``webhook_delivery_attempt``)."""
    webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name=WEBHOOKS_SWEEP_TASK, acks_late=True)
def webhooks_sweep() -> int:
    """Beat's webhook sweep: enqueue every due delivery (retries, and sends whose message was lost)."""
    due = webhook_deliveries_due(now=timezone.now())
    webhook_deliveries_enqueue(due)
    return len(due)


@shared_task(name=PRICES_PRUNE_TASK, acks_late=True)
def prices_prune() -> int:
    """Beat's hourly prune of clearing-price history older than ``PRICE_HISTORY_DAYS``."""
    return clearing_prices_prune(now=market_now())


# The previous release's names (``matching.tasks.*``); see the module docstring.
shared_task(name="matching.tasks.matching_round", **ROUND_OPTIONS)(_matching_round)
shared_task(name="matching.tasks.matching_sweep", acks_late=True)(_matching_sweep)
