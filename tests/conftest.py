"""Shared fixtures. Tests run against real PostgreSQL: the server named by DATABASE_URL, or the
embedded one under .cdp/ when it is unset."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from cdp.api.services import api_token_create
from cdp.ingestion.selectors import write_key_cache
from cdp.ingestion.services import SourceWithKey, source_create


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Rate-limit counters and the write-key cache must not leak between tests."""
    cache.clear()
    write_key_cache.clear()
    yield
    cache.clear()
    write_key_cache.clear()


@pytest.fixture(autouse=True)
def _no_resolver_enqueue(settings: Any) -> None:
    """Tests resolve in-process when they mean to; the live worker test turns this back on."""
    settings.CDP_RESOLVER = {**settings.CDP_RESOLVER, "ENQUEUE_ON_INGEST": False}


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Celery tasks run in this process while the test runs (``eager_celery``)."""
    with eager_celery():
        yield


@contextmanager
def eager_celery() -> Iterator[None]:
    """Celery tasks run in this process inside the block; afterwards Celery's setting is what
    it was (removed from its overrides when it was not overridden before)."""
    from cdp.celery import app as celery_app

    changes = celery_app.conf.changes
    assert changes is not None
    had, before = "task_always_eager" in changes, changes.get("task_always_eager")
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        if had:
            changes["task_always_eager"] = before
        else:
            changes.pop("task_always_eager", None)


@pytest.fixture
def source(db: None) -> SourceWithKey:
    return source_create(name="web")


@pytest.fixture
def write_key(source: SourceWithKey) -> str:
    return source.write_key


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture
def tracking_client(write_key: str) -> APIClient:
    """A client that authenticates like Segment SDKs: HTTP Basic with the write key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(write_key))
    return client


@pytest.fixture
def make_token(db: None) -> Callable[..., str]:
    def make(*scopes: str, name: str = "test") -> str:
        return api_token_create(name=name, scopes=scopes).plaintext

    return make


@pytest.fixture
def api_client(make_token: Callable[..., str]) -> Callable[..., APIClient]:
    """``api_client("events:read")`` -> a client with a bearer token holding those scopes."""

    def make(*scopes: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(*scopes)}")
        return client

    return make


def post_json(client: APIClient, path: str, body: Any, **extra: Any) -> Any:
    """POST raw JSON bytes (the way SDKs do), not through DRF's test encoder."""
    return post_raw(client, path, orjson.dumps(body), **extra)


def post_raw(
    client: APIClient,
    path: str,
    raw: bytes,
    *,
    content_type: str = "application/json",
    **extra: Any,
) -> Any:
    """POST a body exactly as given (bytes: gzip, malformed JSON...)."""
    # Django's test client takes bytes as well as str; the type stub only says str.
    return client.generic("POST", path, raw, content_type=content_type, **extra)  # type: ignore[arg-type]
