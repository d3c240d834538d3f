"""Demo installation for ``manage.py seed_demo``: ``catalog`` (names, places, products),
``generator`` (deterministic people, events and CRM records), ``seeding`` (logins, sources,
token, and loading through the real ingestion services)."""
