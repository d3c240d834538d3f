"""The admin never shows plaintext PII on an ordinary page."""

from __future__ import annotations

from typing import Any

from cdp.ingestion.models import Event, Record
from cdp.ingestion.services import SourceWithKey, events_ingest, records_upsert

EMAIL = "ada.lovelace@example.com"
PHONE = "+44 20 7946 0001"


def test_event_and_record_pages_do_not_show_pii(admin_client: Any, source: SourceWithKey) -> None:
    source_id = source.source.pk
    events_ingest(
        source_id=source_id,
        call_type="identify",
        messages=[
            {
                "userId": "u-pii",
                "traits": {"email": EMAIL, "phone": PHONE},
                "context": {"ip": "203.0.113.9", "traits": {"email": EMAIL}},
                "messageId": "pii-1",
            }
        ],
    )
    records_upsert(
        source_id=source_id,
        records=[{"external_id": "crm-pii", "email": EMAIL, "phone": PHONE, "last_name": "Byron"}],
    )
    event = Event.objects.get(message_id="pii-1")
    record = Record.objects.get(external_id="crm-pii")

    pages = [
        f"/admin/ingestion/event/{event.pk}/change/",
        f"/admin/ingestion/record/{record.pk}/change/",
        "/admin/ingestion/event/",
        "/admin/ingestion/record/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for secret in (EMAIL, PHONE, "203.0.113.9", "Byron"):
            assert secret not in html, (page, secret)
    assert "u-pii" in admin_client.get(pages[0]).content.decode()  # the page does render
