"""Messages waiting in the Celery broker's queues, asked of the broker at scrape time.

kombu answers a passive ``queue_declare`` with the queue's message count for every transport the
project uses: Redis (``LLEN`` of the queue's list and its priority lists), the filesystem broker of
``make demo`` (the queue's message files in the broker folder) and ``memory://`` (this process's
queue, so under the test settings only what this process published). Messages a worker has taken
but not yet acknowledged are not waiting, and not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from kombu.exceptions import ChannelError
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config.celery_app import app as celery_app

logger = logging.getLogger(__name__)


class QueueCollector(Collector):
    """``marketplace_queue_messages`` by queue, and ``marketplace_broker_up``. One broker connection
    per scrape, bounded by the broker's socket timeouts (``REDIS_TIMEOUT_SECONDS``), never retried."""

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "marketplace_queue_messages",
            "Messages waiting in a Celery queue of the broker (not yet taken by a worker).",
            labels=["queue"],
        )
        up = GaugeMetricFamily("marketplace_broker_up", "1 if the scrape could read the broker's queues, else 0.")
        try:
            for queue, count in sorted(queue_depths().items()):
                waiting.add_metric([queue], count)
            up.add_metric([], 1)
        except Exception as exc:  # a broker outage must not fail the scrape: report it instead
            logger.warning("metrics: cannot read the broker's queues: %s", exc)
            up.add_metric([], 0)
        yield from (waiting, up)


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue Celery is configured with (``celery`` by default)."""
    with celery_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=0)
        channel = connection.default_channel
        return {name: _waiting(channel, name) for name in celery_app.amqp.queues}


def _waiting(channel, queue: str) -> int:
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:  # Redis: the queue's list exists only while it holds messages
        return 0
