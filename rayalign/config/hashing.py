"""Configs as flat parameters (MLflow) and as stable hashes (stage cache keys)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


# Marks a field that changes how a stage runs, not what it produces: Field(..., json_schema_extra=RUN_ONLY).
RUN_ONLY = {"cache_key": False}


def settings(section: BaseModel) -> dict[str, Any]:
    """A section's settings as they enter a cache key: its resources (actor pools, workers) and its
    RUN_ONLY fields are left out, since they change how a stage runs, not what it produces."""
    return section.model_dump(mode="json", exclude=_run_only(section) | {"resources"})


def _run_only(section: BaseModel) -> set[str]:
    return {name for name, field in type(section).model_fields.items() if field.json_schema_extra == RUN_ONLY}


def flatten(config: BaseModel) -> dict[str, Any]:
    """The config as {'section.key': value}, for MLflow params."""
    return flatten_dict(config.model_dump(mode="json"))


def flatten_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A nested dict as {'a.b.c': value}."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", data)
    return out


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts; resources sections are left out by the caller."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
