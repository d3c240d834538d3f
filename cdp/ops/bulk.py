"""Set-based writes of many rows in one statement: each column travels as one array parameter.

Django's ``bulk_create`` and ``bulk_update`` build a placeholder per value (and ``bulk_update`` a
CASE per row); on the resolver's hot path that costs more Python time than PostgreSQL spends on
the rows. ``INSERT ... SELECT FROM unnest(...)`` and ``UPDATE ... FROM unnest(...)`` take the
arrays as they are. Table and column names come from code, never from input.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import psycopg
from django.db import connection

# (PostgreSQL array type, e.g. "bigint[]", values). A jsonb column takes Python values (dicts,
# lists...), a bytea column bytes: the whole batch travels as one JSON document.
Column = tuple[str, Sequence[Any]]


def bound_cursor(*, health_check: bool = True) -> psycopg.Cursor[Any]:
    """A psycopg cursor with server-side binding on Django's connection (and transaction).

    Django's own cursors bind on the client: every value of every array is quoted into the SQL
    text in Python, which on a batch of thousands of rows costs more than the statement itself.
    Here the parameters travel apart from the SQL text. (Queries run here are not seen by
    Django's query log or ``assertNumQueries``.)
    """
    if health_check:
        # As Django's own cursors do: with CONN_HEALTH_CHECKS, a persistent connection the
        # server dropped is replaced at the first query of a request instead of failing it.
        connection.close_if_health_check_failed()
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def rows_insert(
    table: str,
    columns: Mapping[str, Column],
    *,
    returning: str | Sequence[str] | None = None,
    on_conflict: str = "",
) -> list[Any]:
    """Insert one row per position of the column arrays (in that order); returns the
    ``returning`` column of the inserted rows (a tuple per row for several columns), in insert
    order, when asked. With an ``on_conflict`` that skips rows, only the written ones come
    back."""
    names = list(columns)
    count = _row_count(columns)
    if not names or count == 0:
        return []
    sql = (
        f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608 (names from code)
        f"SELECT {', '.join(_read(name, columns[name][0]) for name in names)} "
        f"FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({_fields(columns)})) "
        f"WITH ORDINALITY AS t({', '.join(names)}, position) "
        f"ORDER BY t.position {on_conflict}"
    )
    if returning:
        several = not isinstance(returning, str)
        sql += f" RETURNING {', '.join(returning) if several else returning}"
    with bound_cursor() as cursor:
        cursor.execute(sql, [_document(columns)])
        if not returning:
            return []
        rows = cursor.fetchall()
        return [tuple(row) for row in rows] if several else [row[0] for row in rows]


def rows_update(
    table: str,
    *,
    key: Column | None = None,
    keys: Mapping[str, Column] | None = None,
    columns: Mapping[str, Column],
    assign: Mapping[str, str] | None = None,
) -> int:
    """``UPDATE table AS r SET column = t.column ... FROM <rows> AS t WHERE r.id = t.id`` for
    each position of the arrays. ``key`` is the id array, or ``keys`` several key columns (a
    partitioned table's ``id`` and ``received_at``). ``assign`` replaces the default
    ``column = t.column`` by an expression over ``r`` and ``t`` (``r.n + t.n``). Returns the
    number of rows updated."""
    if keys is not None:
        matched = dict(keys)
    elif key is not None:
        matched = {"id": key}
    else:
        raise ValueError("rows_update needs key or keys")
    everything = {**matched, **columns}
    if _row_count(everything) == 0:
        return 0
    assign = assign or {}
    sets = ", ".join(
        f"{name} = {assign.get(name) or _read(name, columns[name][0])}" for name in columns
    )
    where = " AND ".join(f"r.{name} = t.{name}" for name in matched)
    sql = (
        f"UPDATE {table} AS r SET {sets} "  # noqa: S608 (names from code)
        f"FROM jsonb_to_recordset(%s::jsonb) AS t({_fields(everything)}) WHERE {where}"
    )
    with bound_cursor() as cursor:
        cursor.execute(sql, [_document(everything)])
        return cursor.rowcount


def _row_count(columns: Mapping[str, Column]) -> int:
    lengths = {len(values) for _, values in columns.values()}
    if len(lengths) > 1:
        raise ValueError("every column needs one value per row")
    return lengths.pop() if lengths else 0


def _fields(columns: Mapping[str, Column]) -> str:
    """The column definition list of ``jsonb_to_recordset``; bytea travels as base64 text."""
    return ", ".join(f"{name} {_json_type(pg_type)}" for name, (pg_type, _) in columns.items())


def _json_type(pg_type: str) -> str:
    base = pg_type.removesuffix("[]")
    return "text" if base == "bytea" else base


def _read(name: str, pg_type: str) -> str:
    base = pg_type.removesuffix("[]")
    if base == "bytea":
        return f"decode(t.{name}, 'base64')"
    if base == "jsonb":  # a JSON null in the document is an SQL NULL in the table
        return f"NULLIF(t.{name}, 'null'::jsonb)"
    return f"t.{name}"


def _document(columns: Mapping[str, Column]) -> str:
    """The rows as one JSON array (orjson, in C): one parameter instead of one array per column,
    which psycopg would dump element by element in Python."""
    names = list(columns)
    encoded = [
        [_b64(v) for v in values] if pg_type.removesuffix("[]") == "bytea" else values
        for pg_type, values in columns.values()
    ]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*encoded, strict=True)]
    return orjson.dumps(rows).decode()


def _b64(value: bytes | memoryview | None) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")
