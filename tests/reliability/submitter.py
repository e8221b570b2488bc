"""Submit buyer requests one after another, as the web does for each POST, until stopped (SIGTERM).

``tests/reliability/test_worker_outage.py`` runs it as a process of its own, configured by the
environment like the web (settings, database, broker, cache)::

    python -m tests.reliability.submitter BUYER_ID [PACE_SECONDS]

Each request is ``services.request_submit`` in its own transaction; after it commits, its trigger
asks for a round over the broker, and with Redis down gives up (the sweep matches the request
later): the request is accepted either way. Prints one line per attempt, ``accepted <id>`` or
``refused <error>``.
"""

from __future__ import annotations

import signal
import sys
import time
from datetime import timedelta
from decimal import Decimal

import django


def main(buyer_id: int, pace: float) -> None:
    django.setup()
    from marketplace import services
    from marketplace.market_time import market_now
    from marketplace.models import GpuModel, Organisation, Region

    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    buyer = Organisation.objects.get(pk=buyer_id)
    terms = {
        "gpu_model": GpuModel.objects.get(code="h20"),
        "gpus_per_replica": 1,
        "replicas": 1,
        "origin": Region.objects.get(code="shanghai"),
        "latency_class": "batch",
        "max_price_per_gpu_hour": Decimal("9.00"),
        "duration_hours": 24,
    }
    while not stopping:
        try:
            request = services.request_submit(buyer=buyer, start_by=market_now() + timedelta(hours=6), **terms)
        except Exception as exc:
            print(f"refused {exc!r}", flush=True)
        else:
            print(f"accepted {request.pk}", flush=True)
        time.sleep(pace)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
