"""A resolved config as YAML with each option's one-line documentation beside it (`rayalign config`)."""

from __future__ import annotations

import json
import re

import yaml
from pydantic import BaseModel

from rayalign.config.sections import Section


_PLAIN = re.compile(r"[A-Za-z0-9_./:+-]*[A-Za-z0-9_./+-]")


def _value(value) -> str:
    """One-line YAML for a value: JSON (valid YAML flow style) unless a plain string reads back as itself."""
    if isinstance(value, str) and _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def documented_yaml(model: BaseModel, indent: int = 0) -> str:
    """`model` as YAML, one option per line, each followed by `# its description` (a section's
    docstring heads it); loading the text back gives the same config."""
    lines = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, Section):
            doc = " ".join((type(value).__doc__ or "").split("\n\n")[0].split())
            first = doc.split(". ")[0].rstrip(".")  # the docstring's first sentence
            lines.append(f"{pad}{name}:" + (f"  # {first}." if first else ""))
            lines.append(documented_yaml(value, indent + 1))
            continue
        dumped = model.model_dump(mode="json", include={name})[name]
        line = f"{pad}{name}: {_value(dumped)}"
        if field.description:
            line = f"{line:<44}  # {field.description}"
        lines.append(line)
    return "\n".join(lines)
