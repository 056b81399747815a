"""Loading a run config: presets or YAML files, dotted command-line overrides, errors that name the fix."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rayalign.config.sections import RunConfig


class ConfigError(ValueError):
    """A configuration problem, with a message that says how to fix it."""


def preset_names() -> list[str]:
    """Names of the packaged presets (rayalign/configs/*.yaml)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("rayalign.configs").iterdir()
                  if p.name.endswith(".yaml"))


def _read_source(source: str | None) -> tuple[dict[str, Any], str]:
    if source is None:
        source = "default"
    path = Path(source)
    # A directory named like a preset (a run directory, say) must not hide the preset.
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config file {source!r} does not exist; give a YAML path or a preset "
                              f"({', '.join(preset_names())})")
        text = path.read_text()
    elif source in preset_names():
        text = resources.files("rayalign.configs").joinpath(f"{source}.yaml").read_text()
    else:
        hint = difflib.get_close_matches(source, preset_names(), n=1)
        raise ConfigError(f"{source!r} is neither a YAML file nor a preset"
                          + (f"; did you mean {hint[0]!r}?" if hint else "")
                          + f" Presets: {', '.join(preset_names())}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {source!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {source!r} must be a YAML mapping, got {type(data).__name__}")
    return data, source


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one 'a.b.c=value' override in place; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} must look like section.key=value (e.g. sample.k=4)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {exc}") from exc
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            known = _known_keys(RunConfig, err["loc"][:-1])
            hint = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
            lines.append(f"unknown key {loc!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                         + f"; known keys here: {', '.join(known)}")
        else:
            lines.append(f"{loc}: {err['msg']}" + (f" (got {err['input']!r})" if "input" in err and
                                                    not isinstance(err["input"], dict) else ""))
    return "invalid config:\n  " + "\n  ".join(lines)


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def load_config(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a preset name or YAML path, apply dotted overrides, validate, and return the config."""
    data, _ = _read_source(source)
    for override in overrides:
        apply_override(data, override)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
