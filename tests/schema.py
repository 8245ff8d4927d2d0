"""A small validator for the subset of JSON Schema docs/result.schema.json uses.

type (one or a list), const, enum, minimum, maximum, maxItems, properties,
required, additionalProperties (false or a schema), items.  Any other keyword
in the schema is an error, so the schema cannot use more than is checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "result.schema.json"
KNOWN = {"$schema", "title", "description", "type", "const", "enum", "minimum", "maximum", "maxItems",
         "properties", "required", "additionalProperties", "items"}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def load() -> Dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def errors(value: Any, schema: Dict[str, Any], where: str = "$") -> List[str]:
    """Every way `value` breaks `schema` (empty: valid)."""
    unknown = set(schema) - KNOWN
    if unknown:
        return [f"{where}: schema keyword(s) the validator does not check: {sorted(unknown)}"]
    out: List[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: {value!r} is not of type {kinds}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(f"{where}: {len(value)} items > {schema['maxItems']}")
        for index, item in enumerate(value):
            out += errors(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{where}: missing {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], f"{where}.{key}")
            elif extra is False:
                out.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                out += errors(item, extra, f"{where}.{key}")
    return out
