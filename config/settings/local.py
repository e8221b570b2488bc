"""Local development and `make demo`: SQLite and the filesystem broker unless told otherwise."""

from config.env import env_bool
from config.settings.base import *  # noqa: F403

DEBUG = env_bool("DJANGO_DEBUG", True)
#: /metrics needs no token on a developer's machine.
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", True)
#: seed_demo creates the demo logins (password "demo") only where this is on.
DEMO_LOGINS = True
#: A developer's own webhook receiver runs on this machine, over http (docs/api.md#webhooks).
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", True)
WEBHOOKS_ALLOW_PRIVATE_URLS = env_bool("WEBHOOKS_ALLOW_PRIVATE_URLS", True)
