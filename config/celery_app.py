"""The Celery app; configuration comes from Django settings prefixed CELERY_."""

import os

from celery import Celery
from celery.signals import celeryd_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("marketplace")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["marketplace"])


@app.on_after_configure.connect
def _filesystem_broker_folders(sender, **kwargs) -> None:
    """The embedded filesystem broker needs its folders before anyone publishes or consumes."""
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        folder = sender.conf.broker_transport_options.get(key)
        if folder:
            os.makedirs(folder, exist_ok=True)


@celeryd_init.connect
def _worker_waits_out_a_silent_broker(sender, conf, **kwargs) -> None:
    """A worker drops the broker's read timeout (web and beat keep it, so that they fail fast).

    An acknowledgement that times out leaves kombu's Redis channel counting the message as
    unacknowledged; with a prefetch of one, that worker would never fetch again. Without the
    timeout, a worker whose Redis froze waits, and carries on when it answers; a Redis that went
    away closes the socket, and the worker reconnects as before.
    """
    conf.broker_transport_options = {
        key: value for key, value in conf.broker_transport_options.items() if key != "socket_timeout"
    }


@celeryd_init.connect
def _kombu_patched(**kwargs) -> None:
    """kombu 5.7's Redis transport kills a worker that loses Redis while it holds unacknowledged
    messages; ``config/kombu_patch.py`` turns that into a connection error the worker recovers from.
    ``KOMBU_DETACHED_CHANNEL_PATCH=0`` leaves kombu as it is (the test that shows the crash uses it)."""
    from django.conf import settings

    if settings.KOMBU_DETACHED_CHANNEL_PATCH:
        from config import kombu_patch

        kombu_patch.install()


@worker_init.connect
def _engine_compiled(**kwargs) -> None:
    """Load the engine's compiled code (numba's cache; compiled on a first run): the simplex and the
    inference covers' selection, in the worker's main process, before the pool forks: every child
    then starts with it, and no round pays for it."""
    from matching import compiled

    compiled.warm_up()
