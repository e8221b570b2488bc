"""Test settings: the database and broker come from the environment (.ci/run sets PostgreSQL and
Redis); by default an SQLite file and the in-memory broker."""

from config.env import env_str
from config.settings.base import *  # noqa: F403
from config.settings.base import VAR_DIR, broker_transport_options, caches_from_url, database_from_url

DEBUG = False
DEMO_LOGINS = True
DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR}/test.sqlite3"))}
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "memory://")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
CACHE_URL = env_str("CACHE_URL", "locmem://")
CACHES = caches_from_url(CACHE_URL)
MATCHING_COALESCE_SECONDS = 0
# Tests never serve collected static files; WhiteNoise would only warn that none were collected.
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise")]  # noqa: F405
# Tests make many calls quickly; throttling itself is tested with its own rates.
_UNTHROTTLED = {
    "anon": "100000/min",
    "user": "100000/min",
    "login": "100000/min",
    "signup": "100000/min",
    "password_reset": "100000/min",
}
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": _UNTHROTTLED}  # noqa: F405
# Tests sign in and fail to sign in many times, from one address; the sign-in limits are tested with
# their own (tests/security/test_signin_limits.py). Lock-outs are database rows, rolled back per test.
AXES_FAILURE_LIMIT = 1_000_000
