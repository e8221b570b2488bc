"""Celery task failures and retries, counted where every process can read them: the shared cache.

The workers are separate processes (often separate machines) from the web processes Prometheus
scrapes, so the count must live outside both. The shared cache (Redis in production, as for
throttles and round coalescing) takes an atomic ``INCR`` in one round trip and needs no
transaction; the database would not do: a task often fails because the database is down or
its transaction is broken, and the count would be lost with it. Redis counters reset if Redis
loses its data; Prometheus' ``rate()`` and ``increase()`` treat a reset as a counter restart.
(The filesystem cache of ``make demo`` increments by read-and-write, so two workers failing at
the same instant may count once: good enough for a demo.)

The handlers are connected when Django starts (``MarketplaceConfig.ready``), so every worker and
the eager mode of the tests count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from celery.signals import task_failure, task_retry
from django.core.cache import cache
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from config.celery_app import app as celery_app

logger = logging.getLogger(__name__)

#: How a task went wrong: its counter's name in the cache is ``metrics:task:<problem>:<task name>``.
PROBLEMS = ("failure", "retry")


def _key(problem: str, task_name: str) -> str:
    return f"metrics:task:{problem}:{task_name}"


def task_problem_count(*, problem: str, task_name: str) -> None:
    """Add one to the count of ``problem`` for ``task_name``. Never raises: a cache outage loses
    the count, not the worker's handling of the task."""
    key = _key(problem, task_name)
    try:
        cache.add(key, 0, timeout=None)  # creates it if missing; incr alone would raise on a new key
        cache.incr(key)
    except Exception as exc:
        logger.warning("metrics: task %s of %s not counted: %s", problem, task_name, exc)


def _on_failure(sender=None, **kwargs) -> None:
    task_problem_count(problem="failure", task_name=getattr(sender, "name", "unknown"))


def _on_retry(sender=None, **kwargs) -> None:
    task_problem_count(problem="retry", task_name=getattr(sender, "name", "unknown"))


def connect() -> None:
    """Count failures and retries of every task from now on (idempotent: Celery keeps one handler
    per ``dispatch_uid``)."""
    task_failure.connect(_on_failure, weak=False, dispatch_uid="marketplace.metrics.task_failure")
    task_retry.connect(_on_retry, weak=False, dispatch_uid="marketplace.metrics.task_retry")


def task_names() -> list[str]:
    """The project's tasks (Celery's own ``celery.*`` ones left out). A web process has not
    necessarily imported the task modules yet: Celery's loader imports them (once)."""
    celery_app.loader.import_default_modules()
    return sorted(name for name in celery_app.tasks if not name.startswith("celery."))


class TaskProblemCollector(Collector):
    """``marketplace_task_failures_total`` and ``marketplace_task_retries_total`` by task: one
    ``get_many`` round trip to the cache per scrape."""

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "marketplace_task_failures",
            "Celery tasks that ended with an exception (after their last retry), by task, in any worker.",
            labels=["task"],
        )
        retries = CounterMetricFamily(
            "marketplace_task_retries",
            "Celery task retries (say, a shard busy), by task, in any worker.",
            labels=["task"],
        )
        names = task_names()
        try:
            counts = cache.get_many([_key(problem, name) for problem in PROBLEMS for name in names])
        except Exception as exc:  # the shared cache is down: no figures rather than a failed scrape
            logger.warning("metrics: cannot read task failure counts: %s", exc)
            return
        for name in names:
            failures.add_metric([name], counts.get(_key("failure", name), 0))
            retries.add_metric([name], counts.get(_key("retry", name), 0))
        yield from (failures, retries)
