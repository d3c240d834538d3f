"""Ids drawn from a table's sequence before its rows are inserted.

Rows whose ciphertext is bound to their own id (associated data) need the id before the INSERT.
"""

from __future__ import annotations

from django.db import connection


def next_ids(table: str, count: int) -> list[int]:
    """``count`` fresh ids of ``table``'s ``id`` sequence, ascending."""
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return sorted(row[0] for row in cursor.fetchall())
