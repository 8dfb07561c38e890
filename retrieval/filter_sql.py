"""Metadata filters (metadata.py) as SQL conditions on the documents table, for each store.

Both render the same typed comparisons as `MetadataFilter.matches`: a JSON string equals only a
string, a number only a number, a boolean only a boolean; ranges match numbers only; a missing
field fails every condition. Field names travel as bound parameters, never spliced into the SQL.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from retrieval.metadata import Condition, MetadataFilter, Scalar

_SQL_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


# --- SQLite (JSON1): `metadata` is a TEXT column holding the JSON object ----------------------------
def _sqlite_eq(column: str, path: str, value: Scalar, params: list[Any]) -> str:
    if isinstance(value, bool):
        params.append(path)
        return f"json_type({column}, ?) = '{'true' if value else 'false'}'"
    if isinstance(value, int | float):
        params.extend((path, path, value))
        return f"(json_type({column}, ?) IN ('integer', 'real') AND json_extract({column}, ?) = ?)"
    params.extend((path, path, value))
    return f"(json_type({column}, ?) = 'text' AND json_extract({column}, ?) = ?)"


def _sqlite_condition(column: str, c: Condition, params: list[Any]) -> str:
    path = f'$."{c.field}"'  # field names are checked: no quotes or dots can occur in them
    if c.op == "eq":
        return _sqlite_eq(column, path, c.value, params)  # type: ignore[arg-type]
    if c.op == "in":
        values: tuple[Scalar, ...] = c.value  # type: ignore[assignment]
        if not values:
            return "0"
        return "(" + " OR ".join(_sqlite_eq(column, path, v, params) for v in values) + ")"
    params.extend((path, path, c.value))
    return f"(json_type({column}, ?) IN ('integer', 'real') AND json_extract({column}, ?) {_SQL_OPS[c.op]} ?)"


def sqlite_where(f: MetadataFilter | None, column: str = "d.metadata") -> tuple[str, list[Any]]:
    """A condition on `column` and its parameters ("1" when there is no filter)."""
    if f is None or not f.conditions:
        return "1", []
    params: list[Any] = []
    parts = [_sqlite_condition(column, c, params) for c in f.conditions]
    return " AND ".join(parts), params


# --- Postgres (JSONB): containment for equality (typed, GIN-indexable), casts guarded by CASE -------
def _pg_eq(column: sql.Composable, field: str, value: Scalar) -> sql.Composable:
    return sql.SQL("{} @> {}").format(column, sql.Literal(Jsonb({field: value})))


def _pg_condition(column: sql.Composable, c: Condition) -> sql.Composable:
    if c.op == "eq":
        return _pg_eq(column, c.field, c.value)  # type: ignore[arg-type]
    if c.op == "in":
        values: tuple[Scalar, ...] = c.value  # type: ignore[assignment]
        if not values:
            return sql.SQL("FALSE")
        return sql.SQL("({})").format(sql.SQL(" OR ").join(_pg_eq(column, c.field, v) for v in values))
    name = sql.Literal(c.field)
    return sql.SQL(
        "(CASE WHEN jsonb_typeof({col} -> {name}) = 'number' THEN ({col} ->> {name})::float8 END) {op} {v}"
    ).format(col=column, name=name, op=sql.SQL(_SQL_OPS[c.op]), v=sql.Literal(float(c.value)))  # type: ignore[arg-type]


def postgres_where(f: MetadataFilter | None, column: str = "d.metadata") -> sql.Composable:
    """A condition on the JSONB `column` ("TRUE" when there is no filter)."""
    if f is None or not f.conditions:
        return sql.SQL("TRUE")
    col = sql.SQL(column)
    return sql.SQL(" AND ").join(_pg_condition(col, c) for c in f.conditions)
