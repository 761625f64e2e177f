"""A checker for the subset of OpenAPI 3.0 schema node/openapi.py uses, so
that tests can hold every answer to the description the node serves."""

from __future__ import annotations

from typing import Any


class SchemaMismatch(AssertionError):
    """A document does not match its OpenAPI schema (used by the tests)."""


def check(instance: Any, schema: dict[str, Any], spec: dict[str, Any], where: str = "$") -> None:
    """Validate ``instance`` against the subset of OpenAPI 3.0 schema used above."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        check(instance, spec["components"]["schemas"][name], spec, where)
        return
    if "oneOf" in schema:
        matches = 0
        for option in schema["oneOf"]:
            try:
                check(instance, option, spec, where)
                matches += 1
            except SchemaMismatch:
                pass
        if matches != 1:
            raise SchemaMismatch(f"{where}: matches {matches} of the oneOf options")
        return
    if instance is None:
        if not schema.get("nullable"):
            raise SchemaMismatch(f"{where}: null is not allowed")
        return
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind == "integer":
        if not isinstance(instance, int) or isinstance(instance, bool):
            raise SchemaMismatch(f"{where}: expected integer, got {instance!r}")
        if "minimum" in schema and instance < schema["minimum"]:
            raise SchemaMismatch(f"{where}: {instance} < minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            raise SchemaMismatch(f"{where}: {instance} > maximum {schema['maximum']}")
    elif kind in types and not isinstance(instance, types[kind]):
        raise SchemaMismatch(f"{where}: expected {kind}, got {type(instance).__name__}")
    if "enum" in schema and instance not in schema["enum"]:
        raise SchemaMismatch(f"{where}: {instance!r} not in {schema['enum']}")
    if kind == "string" and "pattern" in schema:
        import re

        if not re.search(schema["pattern"], instance):
            raise SchemaMismatch(f"{where}: {instance!r} does not match {schema['pattern']}")
    if kind == "array":
        if len(instance) < schema.get("minItems", 0) or len(instance) > schema.get("maxItems", 1 << 62):
            raise SchemaMismatch(f"{where}: array length {len(instance)} out of bounds")
        for i, item in enumerate(instance):
            check(item, schema.get("items", {}), spec, f"{where}[{i}]")
    if kind == "object":
        for key in schema.get("required", []):
            if key not in instance:
                raise SchemaMismatch(f"{where}: missing {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                check(value, props[key], spec, f"{where}.{key}")
            elif extra is False:
                raise SchemaMismatch(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                check(value, extra, spec, f"{where}.{key}")


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the spec declares for one response (KeyError if undeclared)."""
    op = spec["paths"][path][method.lower()]
    resp = op["responses"][str(status)]
    return resp["content"]["application/json"]["schema"]  # type: ignore[no-any-return]
