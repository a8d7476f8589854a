"""The shape of a benchmark report (``visattn bench --json``), and a small validator for it.

:data:`SCHEMA` uses a subset of JSON Schema (``type``, ``enum``, ``minimum``, ``required``,
``properties``, ``additionalProperties: false``, ``items``, ``minItems``, ``maxItems``) that
:func:`validate` checks without third-party packages.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "validate"]


def _nullable(schema: dict) -> dict:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*types, "null"]}


def _object(properties: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            "additionalProperties": False}


_COUNT = {"type": "integer", "minimum": 0}
_POSITIVE = {"type": "integer", "minimum": 1}
_RATIO = {"type": ["number", "null"], "minimum": 0}
_STRING = {"type": "string"}
_SIZE = {"type": "array", "items": _POSITIVE, "minItems": 2, "maxItems": 2}
_TIMES = _nullable(_object({"median": {"type": "number", "minimum": 0}, "p10": {"type": "number", "minimum": 0},
                            "p90": {"type": "number", "minimum": 0}, "n": _POSITIVE}))
_MEASUREMENT = {
    "status": {"enum": ["ok", "skipped", "error"]},
    "reason": _nullable(_STRING),
    "params": _nullable(_COUNT),
    "flops": _nullable(_COUNT),
    "elementwise_ops": _nullable(_COUNT),
    "forward_ms": _TIMES,
    "forward_backward_ms": _TIMES,
    "memory_forward_bytes": _nullable(_COUNT),
    "memory_forward_backward_bytes": _nullable(_COUNT),
    "memory_note": _nullable(_STRING),
}
_RELATIVE = _nullable(_object({k: _RATIO for k in ("params", "flops", "forward_time", "forward_backward_time",
                                                   "memory_forward", "memory_forward_backward")}))
_PEER = _object({
    "name": _STRING, "target": _STRING, "settings": _STRING, "status": _MEASUREMENT["status"],
    "reason": _MEASUREMENT["reason"], "params": _nullable(_COUNT), "forward_ms": _TIMES, "forward_backward_ms": _TIMES,
    "ratio_forward": _RATIO, "ratio_forward_backward": _RATIO,
})
_RESULT = _object({
    "key": _STRING, "title": _STRING, "role": _STRING, "complexity": _STRING, "size_bound": {"type": "boolean"},
    "size": _SIZE, "hw": _POSITIVE, **_MEASUREMENT, "relative": _RELATIVE, "peers": {"type": "array", "items": _PEER},
})
_BASELINE = _nullable(_object({
    "name": _STRING, "definition": _STRING,
    "results": {"type": "array", "items": _object({"size": _SIZE, "hw": _POSITIVE, **_MEASUREMENT})},
}))
_ENVIRONMENT = _object({
    "device": _STRING, "device_name": _STRING, "cpu_model": _STRING, "cpu_count": _nullable(_POSITIVE),
    "threads": _POSITIVE, "interop_threads": _POSITIVE, "omp_num_threads": _nullable(_STRING),
    "flush_denormal": {"type": "boolean"}, "torch": _STRING, "cuda": _nullable(_STRING),
    "cudnn": _nullable(_COUNT), "python": _STRING, "platform": _STRING, "visattn": _STRING,
    "allocator": _STRING,
})
_SETTINGS = _object({
    "keys": {"type": "array", "items": _STRING, "minItems": 1},
    "channels": _POSITIVE, "sizes": {"type": "array", "items": _SIZE, "minItems": 1}, "batch": _POSITIVE,
    "device": _STRING, "dtype": {"enum": ["float32", "bfloat16", "float16"]}, "channels_last": {"type": "boolean"},
    "compile": {"type": "boolean"}, "backward": {"type": "boolean"}, "repeat": _POSITIVE, "warmup": _COUNT,
    "baseline": _nullable(_STRING), "peers": {"type": "boolean"}, "memory": {"type": "boolean"},
    "threads": _nullable(_POSITIVE), "max_time": {"type": ["number", "null"], "minimum": 0},
})

#: the report written by ``visattn bench --json``
SCHEMA: dict = _object({
    "schema": {"enum": ["visattn-bench/1"]},
    "created": _STRING,
    "duration_s": {"type": "number", "minimum": 0},
    "command": _STRING,
    "environment": _ENVIRONMENT,
    "settings": _SETTINGS,
    "definitions": {"type": "object"},
    "baseline": _BASELINE,
    "results": {"type": "array", "items": _RESULT},
    "summary": _object({"ok": _COUNT, "skipped": _COUNT, "error": _COUNT}),
})

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(instance: Any, schema: dict | None = None, path: str = "$") -> list[str]:
    """Check ``instance`` against ``schema`` (default :data:`SCHEMA`); returns the errors, empty when valid.

    Example:
        >>> validate({"a": 1}, {"type": "object", "properties": {"a": {"type": "string"}}})
        ['$.a: expected string, got int 1']
    """
    schema = SCHEMA if schema is None else schema
    errors: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(instance).__name__} {instance!r:.60}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](instance) and instance < schema["minimum"]:
        errors.append(f"{path}: {instance!r} is below the minimum {schema['minimum']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing {name!r}" for name in schema.get("required", []) if name not in instance]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {name!r}" for name in instance if name not in props]
        for name, sub in props.items():
            if name in instance:
                errors += validate(instance[name], sub, f"{path}.{name}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{path}: {len(instance)} items, fewer than {schema['minItems']}")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            errors.append(f"{path}: {len(instance)} items, more than {schema['maxItems']}")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors
