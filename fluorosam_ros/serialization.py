"""Small helpers for writing configs and records as JSON."""

from __future__ import annotations

from typing import Any


def to_jsonable(value: Any) -> Any:
    """Tuples become lists, recursively (dataclass `asdict()` output keeps tuples)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
