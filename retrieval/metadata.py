"""Document metadata and the filters that select documents by it.

Metadata is a flat JSON object per document: field names of letters, digits, '_' and '-' (starting
with a letter or '_'), values strings, numbers or booleans. A filter is a JSON object of conditions
on those fields, all of which must hold:

    {"lang": "en"}                        equality (a string, number or boolean)
    {"lang": {"in": ["en", "fr"]}}        one of several values
    {"year": {"gte": 2020, "lt": 2024}}   numeric ranges: gt, gte, lt, lte (several at once: all hold)
    {"lang": {"eq": "en"}}                equality, spelled out

Comparisons are typed: the string "2024" does not equal the number 2024, and a range only matches
numbers. A field that a document does not have fails every condition on it, so a filter on an
unknown field matches nothing. Stores apply filters inside their search (see filter_sql.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from retrieval.errors import InvalidRequest

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_FIELDS = 64
MAX_STRING_CHARS = 1024
MAX_IN_VALUES = 256

Scalar = str | int | float | bool
Operator = Literal["eq", "in", "gt", "gte", "lt", "lte"]
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRequest(f"{where}: numbers must be finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise InvalidRequest(f"{where}: strings are limited to {MAX_STRING_CHARS} characters")
        return value
    raise InvalidRequest(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


def _field(name: Any, where: str) -> str:
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise InvalidRequest(
            f"{where}: invalid field name {name!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or '_'"
        )
    return name


def check_metadata(raw: Any, where: str = "metadata") -> dict[str, Scalar]:
    """`raw` as document metadata; InvalidRequest (422) naming the offending field otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if len(raw) > MAX_FIELDS:
        raise InvalidRequest(f"{where}: {len(raw)} fields, at most {MAX_FIELDS}")
    return {_field(k, where): _scalar(v, f"{where}.{k}") for k, v in raw.items()}


@dataclass(frozen=True)
class Condition:
    field: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class MetadataFilter:
    """Conditions that must all hold (none: every document matches)."""

    conditions: tuple[Condition, ...]

    @classmethod
    def parse(cls, raw: Any, where: str = "filter") -> MetadataFilter | None:
        """The filter `raw` describes (None for none); InvalidRequest (422) naming what is wrong."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise InvalidRequest(f"{where}: expected a JSON object of field conditions")
        conditions: list[Condition] = []
        for name, spec in raw.items():
            at = f"{where}.{name}"
            field = _field(name, where)
            if not isinstance(spec, dict):
                conditions.append(Condition(field, "eq", _scalar(spec, at)))
                continue
            if not spec:
                raise InvalidRequest(f"{at}: give a value or operators (eq, in, gt, gte, lt, lte)")
            for op, value in spec.items():
                conditions.append(_condition(field, op, value, f"{at}.{op}"))
        return cls(tuple(conditions))

    def matches(self, metadata: dict[str, Any]) -> bool:
        """Whether a document with `metadata` passes (the reference the stores' SQL must agree with)."""
        return all(_holds(c, metadata) for c in self.conditions)


def _condition(field: str, op: Any, value: Any, where: str) -> Condition:
    if op == "eq":
        return Condition(field, "eq", _scalar(value, where))
    if op == "in":
        if not isinstance(value, list):
            raise InvalidRequest(f"{where}: expected a list of values")
        if len(value) > MAX_IN_VALUES:
            raise InvalidRequest(f"{where}: {len(value)} values, at most {MAX_IN_VALUES}")
        return Condition(field, "in", tuple(_scalar(v, f"{where}.{i}") for i, v in enumerate(value)))
    if op in RANGE_OPERATORS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{where}: a range bound must be a number")
        return Condition(field, op, _scalar(value, where))
    raise InvalidRequest(f"{where}: unknown operator {op!r}; use eq, in, gt, gte, lt or lte")


def same_value(a: Any, b: Scalar) -> bool:
    """Typed equality: booleans equal only booleans, numbers only numbers, strings only strings."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def _holds(c: Condition, metadata: dict[str, Any]) -> bool:
    if c.field not in metadata:
        return False
    have = metadata[c.field]
    if c.op == "eq":
        return same_value(have, c.value)  # type: ignore[arg-type]
    if c.op == "in":
        return any(same_value(have, v) for v in c.value)  # type: ignore[union-attr]
    if isinstance(have, bool) or not isinstance(have, int | float):
        return False
    bound = float(c.value)  # type: ignore[arg-type]
    return {"gt": have > bound, "gte": have >= bound, "lt": have < bound, "lte": have <= bound}[c.op]
