"""Configuration: load, validate against the one schema, fill defaults, merge named overrides.

The schema lives in ``workflow/schemas/config.schema.yaml`` (JSON Schema 2020-12,
``additionalProperties: false`` at every level). Validation errors name the dotted key path and
say what is wrong, e.g. ``config key 'mels.n_mel' is not allowed here (misspelt?) ...``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what to do."""


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The schema (``workflow/schemas/config.schema.yaml`` unless ``path``); do not modify it."""
    return _load_schema(str(Path(path) if path else SCHEMA_PATH))


@functools.cache
def _load_schema(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config schema {p} not found (is the repository complete?)")
    with open(p) as fh:
        return yaml.safe_load(fh)


def _extend_with_default(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
                elif (
                    prop not in instance
                    and sub.get("type") == "object"
                    and "properties" in sub
                    and not sub.get("required")
                ):
                    instance[prop] = {}
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_default(jsonschema.Draft202012Validator)


def _describe(err: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {})))
        keys = ", ".join(f"'{path + '.' if path else ''}{k}'" for k in extra)
        return f"config key {keys} is not allowed here (misspelt?); allowed keys: {allowed}"
    if err.validator == "required":
        return f"config section '{path or '<top level>'}' is missing a required key: {err.message}"
    return f"config key '{path or '<top level>'}': {err.message}"


def validate_config(cfg: dict[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``cfg`` in place (filling defaults) and return it; raise :class:`ConfigError`."""
    schema = schema or load_schema()
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        msgs = "\n  ".join(_describe(e) for e in errors[:10])
        raise ConfigError(f"invalid configuration:\n  {msgs}")
    return cfg


def validate_sections(
    partial: dict[str, Any], schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate the top-level sections present in ``partial`` (filling their defaults in place),
    e.g. ``{"pretrain": {...}}`` of a resolved run; the schema's other sections are not needed."""
    schema = schema or load_schema()
    sub = {**schema, "required": [], "properties": {k: schema["properties"][k] for k in partial}}
    return validate_config(partial, sub)


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    with open(p) as fh:
        try:
            cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return cfg


def load_config(
    path: str | Path,
    schema: Mapping[str, Any] | None = None,
    *,
    overrides: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Read ``path``, merge each override file on top (as ``snakemake --configfile`` does:
    ``load_config("config.yaml", overrides=["config/paper.yaml"])``), validate, fill defaults."""
    cfg = read_config_file(path)
    for o in overrides:
        cfg = deep_merge(cfg, read_config_file(o))
    return validate_config(cfg, schema)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, rest replaces)."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
