"""Every registered admin page renders for a superuser, with rows present: the changelist and a
row's change page, so a bad list_display or field name fails here rather than in front of a
steward."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from cdp.api.services import api_token_create
from cdp.ingestion.services import SourceWithKey
from tests.conftest import post_json
from tests.identity.resolving import ingest, message, resolve

pytestmark = pytest.mark.django_db


@pytest.fixture
def populated(source: SourceWithKey) -> None:
    ingest(
        source.source.pk,
        message(
            "identify",
            userId="u1",
            anonymousId="a1",
            traits={"email": "ada@example.com", "plan": "pro"},
            context={"consent": {"categoryPreferences": {"Advertising": False}}},
        ),
        message("track", at=1, userId="u1", event="Order Completed"),
    )
    resolve()
    token = api_token_create(name="ops", scopes=["consent:write"]).plaintext
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {"user_id": "u1", "choices": [{"purpose": "analytics", "status": "denied"}]}
    assert post_json(client, "/v1/consent", body).status_code == 200


def test_every_admin_page_renders(populated: None) -> None:
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    rendered = 0
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        row = model_admin.get_queryset(response.wsgi_request).first()
        if row is not None:
            page = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[row.pk])
            assert client.get(page).status_code == 200, page
            rendered += 1
    assert rendered >= 8  # the consent, audit, identity and ingestion pages with rows
