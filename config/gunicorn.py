"""gunicorn's configuration, the one place it is set: the image runs

    gunicorn -c config/gunicorn.py config.wsgi:application

(the Dockerfile's CMD, docker-compose.yml's web service), and so do the tests, with only ``--bind``
moved to a loopback port. In production nginx stands in front (config/nginx/marketplace.conf) and
buffers every request and response, so slow clients meet nginx; the limits here hold for whatever
reaches gunicorn directly. Why each number: docs/operations.md, "The web tier".
"""

import os
from pathlib import Path

from config.gunicorn_worker import DeadlineThreadWorker
from config.settings.base import METRICS_MULTIPROC_DIR

bind = ["0.0.0.0:8000"]

# Threads, not one process per request: a request waiting on PostgreSQL or Redis holds a thread,
# and a slow client holds one for at most the deadlines below. Each thread keeps its own database
# connection (DB_CONN_MAX_AGE), so workers x threads must stay under PostgreSQL's max_connections
# (100 by default) with the Celery worker's to spare.
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = DeadlineThreadWorker.configured(
    head_seconds=10,  # the request line and headers, once readable (nginx: client_header_timeout)
    body_seconds=20,  # the whole body after the head; nginx sends it at once, a direct client must too
    send_seconds=30,  # each write of the response (nginx: send_timeout)
    # Django's DATA_UPLOAD_MAX_MEMORY_SIZE (its default, 2.5 MiB) and nginx's client_max_body_size:
    # the API takes JSON and the pages forms, no uploads.
    max_body_bytes=2_621_440,
    first_data_seconds=0.1,  # a new connection with nothing to read waits on the poller, not a thread
    linger_seconds=2,  # a closing connection waits this long for the client's last bytes (on the poller)
)
# An idle kept-alive connection, or a new one that has sent nothing yet, is closed after this many
# seconds. Behind nginx there are none (it opens a connection per request); direct clients reuse
# theirs within a page load.
keepalive = 5
# A worker whose main loop stops answering the arbiter for this long is restarted. With threads it
# bounds no request (the main loop goes on while a thread works); the deadlines above bound reading
# one, and Redis calls their REDIS_TIMEOUT_SECONDS.
timeout = 30
graceful_timeout = 30
# The heartbeat file on tmpfs: a container's /tmp may sit on a slow overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = "-"
# No control socket (gunicornc): nothing here uses it, and every gunicorn of a user would share its
# one default path (~/.gunicorn/gunicorn.ctl), as the tests' several at once would.
control_socket_disable = True


def on_starting(server) -> None:
    """Put the workers in prometheus-client's multiprocess mode and clear its directory.

    Each worker writes its request metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and /metrics
    sums them, so a scrape, whichever worker answers it, counts every worker's requests. The
    variable is set here, in the master before it forks the workers (they inherit it, and read it
    when they import prometheus_client), not when this file is read: reading the configuration
    (``runpy``, a test) must not turn the reader's own process into multiprocess mode. A previous
    run's files would be summed forever, so they go; only prometheus-client's own (``*.db``),
    whatever else the directory holds."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(METRICS_MULTIPROC_DIR))
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker) -> None:
    """A worker is gone: its live gauges stop counting (its counters and histograms stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
