"""Prometheus metrics at ``/metrics`` (prometheus-client); what each metric means: docs/operations.md.

- ``http``: request latency by route, recorded by a middleware in the process that serves the
  request (summed over gunicorn's workers by prometheus-client's multiprocess mode);
- ``market``: rounds, GPUs and voucher budgets, read from the database at scrape time, so the
  figures are right whichever process (a Celery worker) ran the round;
- ``queues``: messages waiting in the broker, asked of the broker at scrape time;
- ``task_problems``: Celery task failures and retries, counted in the shared cache by the workers;
- ``view``: the endpoint, open or behind a bearer token / address allow-list.
"""
