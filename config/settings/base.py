"""Settings shared by every environment. Every value comes from the environment (see README)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_decimal, env_int, env_list, env_networks, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("MARKETPLACE_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-only-key-do-not-use-in-production")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "marketplace",
]

MIDDLEWARE = [
    # Outermost, so that a request's latency includes every other middleware (docs/operations.md).
    "marketplace.metrics.http.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # First of ours: no view, form, session lookup or query may meet a NUL (see the module).
    "marketplace.storable_text.StorableTextMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: the 中文/English switch's cookie, else the browser's Accept-Language, else
    # English. Pages and the API's error messages both follow it.
    "django.middleware.locale.LocaleMiddleware",
    # Pages show China Standard Time; the API keeps UTC (marketplace/web/page_time.py).
    "marketplace.web.page_time.PageTimeZoneMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "marketplace.web.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a sign-in its backend refused into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def database_from_url(url: str) -> dj_database_url.DBConfig:
    """A DATABASES entry from a URL; SQLite gets WAL mode, a busy timeout and immediate writes.

    WAL lets the web process read while the worker writes; IMMEDIATE transactions take the write
    lock up front, so two writers queue on the busy timeout instead of failing with "database is
    locked" half-way through a transaction.
    """
    config = dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    return config


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'marketplace.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: A refused CSRF token: JSON under /api/, our translated page elsewhere.
CSRF_FAILURE_VIEW = "marketplace.api.errors.csrf_failure"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# English unless the visitor's browser or the language switch asks for Chinese. The catalogues
# are marketplace/locale/{zh_Hans,en}/LC_MESSAGES/django.po (docs/i18n.md).
LANGUAGE_CODE = "en"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "marketplace" / "locale"]
LANGUAGE_COOKIE_NAME = "marketplace_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
# Stored and served by the API in UTC; the pages show and take China Standard Time.
TIME_ZONE = "UTC"
PAGE_TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# django-axes' backend comes first: it refuses a locked-out account or address before the model
# backend hashes a password (about 0.4 s of CPU with PBKDF2).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# The web pages' sign-in; after it, each user lands on its own page (staff: the match monitor).
LOGIN_URL = "web:signin"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:board"

REST_FRAMEWORK = {
    # ``Authorization: Token <secret>`` takes an API key (gmk_…) or a legacy DRF token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "marketplace.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # KeyScopes holds an API key to its scopes; views that name their own permissions start from
    # ``marketplace.api.permissions.scoped`` so that it stays (a test checks every API view).
    "DEFAULT_PERMISSION_CLASSES": [
        "marketplace.api.permissions.KeyScopes",
        "rest_framework.permissions.IsAuthenticatedOrReadOnly",
    ],
    # The API speaks JSON. Form bodies would bring HTML-form rules with them (a blank optional field
    # counts as absent), so they are a 415; the web pages post their forms to their own views. The
    # parser bounds a body's depth and refuses text no column can store (marketplace.api.parsers).
    "DEFAULT_PARSER_CLASSES": ["marketplace.api.parsers.JSONParser"],
    # JSON out, and nothing else: the browsable API's HTML pages needed a queryset from views that
    # have none (a 500 on `Accept: text/html`). Such a request is now a 406 in JSON; people read the
    # API at /api/docs/ (Swagger UI, its own renderer).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "marketplace.api.schema.AutoSchema",  # documents error responses too
    "EXCEPTION_HANDLER": "marketplace.api.errors.exception_handler",
    # Throttling counts in the shared cache (Redis in production), so every web process agrees.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("THROTTLE_ANON", "120/min"),
        "user": env_str("THROTTLE_USER", "600/min"),
        "login": env_str("THROTTLE_LOGIN", "10/min"),
        # Sign-ups per client address, through the API and the sign-up page together.
        "signup": env_str("THROTTLE_SIGNUP", "20/hour"),
        # Password reset e-mails asked for per client address (the "Forgot password?" page).
        "password_reset": env_str("THROTTLE_PASSWORD_RESET", "10/hour"),
    },
    # How many reverse proxies in front of the web processes append to X-Forwarded-For. Throttles
    # identify an anonymous client by the address this many hops back; unset, DRF would take the
    # header as the client sends it, and a forged header would dodge the anonymous and login limits.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "GPU compute marketplace API",
    "DESCRIPTION": "Idle GPU capacity by region and latency class, matched to inference demand.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's assets come from drf-spectacular-sidecar: served by us, no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # GPUs per node and GPUs per replica share one choice set: name it once.
    "ENUM_NAME_OVERRIDES": {
        "NodeSizeEnum": "marketplace.models.NODE_SIZE_CHOICES",
        "RegionKindEnum": "marketplace.models.Region.Kind",
        "VoucherProgramKindEnum": "marketplace.models.VoucherProgram.Kind",
        "ListingStatusEnum": "marketplace.models.Listing.Status",
        "RequestStatusEnum": "marketplace.models.BuyerRequest.Status",
        "MatchStatusEnum": "marketplace.models.Match.Status",
        "MatchingRunStatusEnum": "marketplace.models.MatchingRun.Status",
        "VoucherStatusEnum": "marketplace.models.Voucher.Status",
        # "role" is an organisation's kind at sign-up and a member's role in it: two enums, two names.
        "MemberRoleEnum": "marketplace.models.Membership.Role",
    },
}

#: Seconds any one Redis call (cache or broker: connect, command) may take before it fails. Without
#: a bound, a Redis that stops answering (frozen, or gone behind a firewall) hangs every request
#: that touches it; with it, the request fails fast and the API answers 503 (see README).
REDIS_TIMEOUT_SECONDS = env_int("REDIS_TIMEOUT_SECONDS", 2)


def is_redis_url(url: str) -> bool:
    return url.startswith(("redis://", "rediss://"))


def broker_transport_options(url: str) -> dict:
    """Kombu transport options for the broker at ``url``: the filesystem broker's folders, or a
    Redis broker's socket timeouts (kombu's default is to wait forever on a silent Redis; workers
    drop the read timeout again, see ``config.celery_app``)."""
    if url.startswith("filesystem://"):
        broker_dir = VAR_DIR / "broker"
        return {
            "data_folder_in": str(broker_dir / "queue"),
            "data_folder_out": str(broker_dir / "queue"),
            "processed_folder": str(broker_dir / "processed"),
            "control_folder": str(broker_dir / "control"),
            "store_processed": False,
        }
    if is_redis_url(url):
        return {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
    return {}


# Celery. The default broker is kombu's filesystem transport: a real broker that needs no server,
# so `make demo` runs a real worker and beat on SQLite alone. Production sets a Redis URL.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(CELERY_BROKER_URL)
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT_SECONDS
# A publish to an unreachable broker is tried twice, not four times (Celery's default), so it gives
# up within about 2 × REDIS_TIMEOUT_SECONDS; the sweep runs the round the lost publish asked for.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis going away never stops a worker or beat: they retry connecting, at start-up too, for as long
# as it takes (Celery's default gives up after 100 attempts, about 45 minutes, and exits).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A round running when the connection is lost finishes (Celery 6 will cancel it by default): it
# writes through PostgreSQL and is idempotent, so finishing is right even if its message comes again.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
#: Whether workers install config/kombu_patch.py (kombu 5.7's Redis channel crashes the worker on a
#: connection loss while it holds unacknowledged messages). Off only to show that crash.
KOMBU_DETACHED_CHANNEL_PATCH = env_bool("KOMBU_DETACHED_CHANNEL_PATCH", True)
#: Seconds between the beat sweeps that re-run open work and expire old rows.
MATCHING_SWEEP_SECONDS = env_int("MATCHING_SWEEP_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "matching-sweep": {"task": "marketplace.matching_sweep", "schedule": float(MATCHING_SWEEP_SECONDS)},
    "prices-prune": {"task": "marketplace.prices_prune", "schedule": 3600.0},
}
#: Days of clearing-price history kept (docs/economics.md); beat prunes older rows hourly.
PRICE_HISTORY_DAYS = env_int("PRICE_HISTORY_DAYS", 30)
#: Saturated listings priced by re-solving per round (matching.prices); the rest are "unavailable".
PRICE_MAX_RESOLVES = env_int("PRICE_MAX_RESOLVES", 16)
#: Components with more requests than this are not re-solved for prices (their rents: unavailable).
PRICE_MAX_COMPONENT_REQUESTS = env_int("PRICE_MAX_COMPONENT_REQUESTS", 2000)
#: Seconds of re-solving a round may spend on prices; no new re-solve starts after it (the rest: unavailable).
PRICE_TIME_BUDGET_SECONDS = float(env_decimal("PRICE_TIME_BUDGET_SECONDS", "1.0"))
#: Rounds that look ahead (matching.lookahead, docs/economics.md): a round charges latency-tolerant
#: work, in the engine's cost, the recent scarcity rent of the capacity it takes. Off: today's myopic rounds.
MATCHING_LOOKAHEAD = env_bool("MATCHING_LOOKAHEAD", False)
#: Hours of clearing-price history whose mean rent per (region, GPU model) is a listing's reservation.
MATCHING_LOOKAHEAD_HOURS = env_int("MATCHING_LOOKAHEAD_HOURS", 24)
#: A listing's reservation is this many times that mean rent (matching.lookahead.RESERVATION_SCALE).
MATCHING_LOOKAHEAD_SCALE = env_decimal("MATCHING_LOOKAHEAD_SCALE", "1")
#: With the look-ahead, requests whose start_by is over an hour away wait for the end of the call
#: period (minutes, counted in market time) they were submitted in; 0: nothing is held.
MATCHING_LOOKAHEAD_PERIOD_MINUTES = env_int("MATCHING_LOOKAHEAD_PERIOD_MINUTES", 60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# A shared cache coordinates processes (coalescing of matching rounds, throttling): Redis in
# production, a directory on disk for the embedded default.
CACHE_URL = env_str("CACHE_URL", f"file://{VAR_DIR / 'cache'}")


def caches_from_url(url: str) -> dict:
    """``CACHES`` for ``url``: Redis (with bounded socket timeouts), a directory, or in-process."""
    if is_redis_url(url):
        timeouts = {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}
        cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "OPTIONS": timeouts}
    elif url.startswith("file://"):
        cache = {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": url.removeprefix("file://"),
        }
    else:
        cache = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    return {"default": cache}


CACHES = caches_from_url(CACHE_URL)
#: A busy shard's rounds wait this many seconds, so that each takes a window's worth of commits. A
#: quiet shard's commit starts its round at once, and the commits during a round share the next
#: (marketplace.services.triggers).
MATCHING_COALESCE_SECONDS = env_int("MATCHING_COALESCE_SECONDS", 1)
#: A shard (GPU model) is busy when at least this many commits in the last second found a round of it
#: already pending or running.
MATCHING_BUSY_COMMITS_PER_SECOND = env_int("MATCHING_BUSY_COMMITS_PER_SECOND", 1)
#: Open (unmatched or partly matched) requests one buyer may have at once.
MAX_OPEN_REQUESTS_PER_BUYER = env_int("MAX_OPEN_REQUESTS_PER_BUYER", 500)
#: The platform's share of each settled match's gross, in percent (see marketplace.money).
PLATFORM_FEE_PERCENT = env_decimal("PLATFORM_FEE_PERCENT", "5")

# Provider agents (marketplace.services.agents; docs/api.md, "Provider agents"). Heartbeat times are
# real time; the provisioning deadline counts from a match's planned start, in market time.
#: A node of an agent-driven listing with no heartbeat for this long is failed, and its matches fail over.
NODE_HEARTBEAT_TIMEOUT_SECONDS = env_int("NODE_HEARTBEAT_TIMEOUT_SECONDS", 90)
#: A match on an agent-driven listing not ready this long after its planned start fails over.
PROVISION_DEADLINE_SECONDS = env_int("PROVISION_DEADLINE_SECONDS", 600)
#: An interruptible match a round pre-empts runs this many seconds more (market time) before it
#: ends as ``preempted`` and its GPUs pass to the on-demand demand that needed them
#: (marketplace.services.preemption; docs/interruptible.md). At least 1: a notice is always given.
PREEMPT_NOTICE_SECONDS = env_int("PREEMPT_NOTICE_SECONDS", 300)
if PREEMPT_NOTICE_SECONDS < 1:
    raise ImproperlyConfigured(f"PREEMPT_NOTICE_SECONDS must be at least 1, got {PREEMPT_NOTICE_SECONDS}.")
#: The SLA credit's multiple of the price of the GPU-hours lost (marketplace.money.sla_credit).
SLA_CREDIT_MULTIPLE = env_decimal("SLA_CREDIT_MULTIPLE", "3")
#: Matches in the last 30 days a listing (or provider) needs for a reliability score (marketplace.reliability);
#: with fewer its score is null ("new"), never 1.
RELIABILITY_MIN_MATCHES = env_int("RELIABILITY_MIN_MATCHES", 5)

# Prometheus metrics at /metrics (marketplace.metrics; docs/operations.md, "Metrics"). Open to anyone
# only where METRICS_PUBLIC is on (the local settings); otherwise a scraper sends
# "Authorization: Bearer <METRICS_TOKEN>" or comes from METRICS_ALLOWED_IPS (addresses or networks).
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", False)
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS", "")
#: The round metrics describe this many of the newest finished matching runs.
METRICS_RECENT_ROUNDS = env_int("METRICS_RECENT_ROUNDS", 200)
#: Where gunicorn's worker processes keep their request metrics for a scrape to sum
#: (prometheus-client's multiprocess mode): config/gunicorn.py exports it as
#: PROMETHEUS_MULTIPROC_DIR and empties it when gunicorn starts.
METRICS_MULTIPROC_DIR = VAR_DIR / "prometheus"

# Sign-in limits (django-axes; marketplace.account_limits, docs/operations.md#sign-in-limits). Failed
# sign-ins through the web page, the admin login and the API's token endpoint count per username and
# per client address, each on its own: SIGNIN_FAILURE_LIMIT failures refuse that username from every
# address, and that address for every username, until SIGNIN_COOLOFF_MINUTES have passed since the
# last counted failure. The counts live in the database (axes' AccessAttempt rows): its updates are
# atomic on PostgreSQL and SQLite alike (the embedded file cache's increments are not), sign-in keeps
# working through a Redis outage, and the admin lists and deletes lock-outs. Attempts refused while
# locked are not counted, so a lock-out ends on time however long the guessing goes on.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("SIGNIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGNIN_COOLOFF_MINUTES", 15))
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() < 60:
    raise ImproperlyConfigured("SIGNIN_FAILURE_LIMIT and SIGNIN_COOLOFF_MINUTES must be at least 1.")
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "marketplace.account_limits.client_address"
AXES_LOCKOUT_CALLABLE = "marketplace.account_limits.lockout_response"
# Successful sign-ins are not logged (axes' AccessLog would grow a row per sign-in, for ever).
AXES_DISABLE_ACCESS_LOG = True
# No start-up banner on every manage.py command; failures and lock-outs are still logged (WARNING).
AXES_VERBOSE = False

# Webhooks (marketplace.services.webhooks; docs/api.md#webhooks, docs/operations.md#webhooks).
#: Delays in seconds before each retry of a failed delivery (the Standard Webhooks/Svix schedule:
#: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, about 27.6 h in all); after the last, it has failed.
WEBHOOKS_RETRY_SCHEDULE_SECONDS = [
    int(value) for value in env_list("WEBHOOKS_RETRY_SCHEDULE_SECONDS", "5,300,1800,7200,18000,36000,36000")
]
if not WEBHOOKS_RETRY_SCHEDULE_SECONDS or min(WEBHOOKS_RETRY_SCHEDULE_SECONDS) < 0:
    raise ImproperlyConfigured("WEBHOOKS_RETRY_SCHEDULE_SECONDS must list delays of 0 seconds or more.")
#: Seconds a delivery's HTTP request may take, connecting included.
WEBHOOKS_TIMEOUT_SECONDS = env_int("WEBHOOKS_TIMEOUT_SECONDS", 10)
#: An endpoint whose deliveries have all failed for this long is disabled and its owners e-mailed.
WEBHOOKS_DISABLE_AFTER_SECONDS = env_int("WEBHOOKS_DISABLE_AFTER_SECONDS", 24 * 3600)
#: Seconds between the beat sweeps that enqueue due deliveries (a lost message waits at most this).
WEBHOOKS_SWEEP_SECONDS = env_int("WEBHOOKS_SWEEP_SECONDS", 30)
#: voucher_program.budget_low is sent when a programme's remaining budget falls below this percent.
WEBHOOKS_BUDGET_LOW_PERCENT = env_int("WEBHOOKS_BUDGET_LOW_PERCENT", 10)
#: For tests and local receivers only: allow http:// endpoints, and hosts with non-public addresses
#: (loopback, private, link-local…). Both off in production: they open the SSRF the rules close.
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)
WEBHOOKS_ALLOW_PRIVATE_URLS = env_bool("WEBHOOKS_ALLOW_PRIVATE_URLS", False)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "marketplace.webhooks_sweep",
    "schedule": float(WEBHOOKS_SWEEP_SECONDS),
}
#: E-mail (the disabled-endpoint notice): the console locally; production sets an SMTP backend.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "marketplace@localhost")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
