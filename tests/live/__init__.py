"""Tests that start real processes: a live HTTP server fed by the real Segment and RudderStack
SDKs, and a real Celery worker on the real broker. Marked ``live``."""
