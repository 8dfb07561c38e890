"""Walks an OpenAPI schema for the numbers a request may carry (bodies, path and query parameters)
and names those without both a lower and an upper bound."""

from __future__ import annotations

from typing import Any

LOWER = ("minimum", "exclusiveMinimum")
UPPER = ("maximum", "exclusiveMaximum")


def unbounded_numbers(schema: dict[str, Any]) -> list[str]:
    """`METHOD /path: where` for every integer or number field of a request lacking a bound."""
    components = schema.get("components", {}).get("schemas", {})
    found: list[str] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]", seen)
            return
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:  # recursive models are walked once per path
                walk(components[name], name, seen | {name})
            return
        if node.get("type") in ("integer", "number"):
            missing = [
                side
                for side, keys in (("lower", LOWER), ("upper", UPPER))
                if not any(k in node for k in keys)
            ]
            if missing:
                found.append(f"{where} ({node['type']}, no {' or '.join(missing)} bound)")
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                walk(value, f"{where}.{key}", seen)

    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                walk(parameter.get("schema", {}), f"{label}: parameter {parameter.get('name')}", frozenset())
            for content in operation.get("requestBody", {}).get("content", {}).values():
                walk(content.get("schema", {}), f"{label}: body", frozenset())
    return sorted(set(found))
