"""``cdp_try_timestamptz(text)``: a trait or property string as a timestamp, NULL when it does
not parse, so one malformed value cannot fail a segment's whole query. The compiler calls it only
on strings already shaped like ISO dates, so the exception path is rare."""

from django.db import migrations

FORWARD = """
CREATE FUNCTION cdp_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
"""
BACKWARD = "DROP FUNCTION cdp_try_timestamptz(text);"


class Migration(migrations.Migration):
    dependencies = [("segments", "0002_activation")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
