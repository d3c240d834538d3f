"""``cdp_try_timestamptz`` catches cast errors in an exception block, which is a subtransaction:
PostgreSQL refuses those during a parallel operation, so the function must be PARALLEL UNSAFE
(0003 declared it safe, and a parallel plan of a segment query with a date comparison failed)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("segments", "0004_membership_change_order")]

    operations = [
        migrations.RunSQL(
            "ALTER FUNCTION cdp_try_timestamptz(text) PARALLEL UNSAFE;",
            "ALTER FUNCTION cdp_try_timestamptz(text) PARALLEL SAFE;",
        )
    ]
