"""PII is stored encrypted (cdp/ingestion/pii.py): a ``pii`` ciphertext column on events and
records, and the plaintext person columns of records are dropped.

``ingestion_event`` is partitioned: ``ALTER TABLE ... ADD COLUMN`` on the parent adds the column
to every partition (the default one and the monthly ones), and ``cdp_ensure_event_partitions``
builds later partitions ``LIKE`` the parent, so they get it too (tests/ingestion/test_pii.py
checks both). A nullable column without a default is a catalog change only: no table rewrite.

Records stored before this migration lose their plaintext person fields here. Their
``content_digest`` (now an HMAC) no longer matches any new import, so re-importing the CRM
rewrites every such record with its PII encrypted. Events stored before it keep their traits and
context as they were: encrypting those needs a backfill job (not part of this migration).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingestion", "0001_initial"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="record",
            name="birth_date",
        ),
        migrations.RemoveField(
            model_name="record",
            name="city",
        ),
        migrations.RemoveField(
            model_name="record",
            name="email",
        ),
        migrations.RemoveField(
            model_name="record",
            name="first_name",
        ),
        migrations.RemoveField(
            model_name="record",
            name="last_name",
        ),
        migrations.RemoveField(
            model_name="record",
            name="phone",
        ),
        migrations.RemoveField(
            model_name="record",
            name="postcode",
        ),
        migrations.RemoveField(
            model_name="record",
            name="street",
        ),
        migrations.AddField(
            model_name="event",
            name="pii",
            field=models.BinaryField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="record",
            name="pii",
            field=models.BinaryField(blank=True, null=True),
        ),
    ]
