"""Configuration: load, validate against the one schema, fill defaults, merge named overrides.

The schema lives in ``workflow/schemas/config.schema.yaml`` (JSON Schema 2020-12,
``additionalProperties: false`` at every level). Validation errors name the dotted key path and
say what is wrong, e.g. ``config key 'mels.n_mel' is not allowed here (misspelt?) ...``.

Beyond the schema: every YAML file the project reads goes through :func:`load_yaml`, which refuses
a key repeated in one mapping (plain YAML keeps the last one silently: a second ``pretrain:`` block
would replace the first), naming the file and both lines; a number that is not finite (``.nan``,
``.inf``) is an error wherever it appears (no setting means anything with it); and the
front-end's settings must fit each other and the sample rate (:func:`check_mels`).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what to do."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated within one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat keys
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: the base class says what is wrong
                break
            if first != line:
                raise ConfigError(
                    f"{key_node.start_mark.name}, line {line}: key {key!r} appears a second time "
                    f"in the same mapping (first on line {first}); YAML would keep only the last "
                    "one: merge the two or delete one"
                )
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, name: str = "<string>") -> Any:
    """Parse YAML ``text`` (from ``name``, for messages); a repeated key is a
    :class:`ConfigError` naming the file and line, as is text that is not YAML."""
    loader = _UniqueKeyLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{name} is not valid YAML: {e}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file (see :func:`parse_yaml`): how the project reads every YAML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p} not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 text ({e})") from None
    return parse_yaml(text, str(p))


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The schema (``workflow/schemas/config.schema.yaml`` unless ``path``); do not modify it."""
    return _load_schema(str(Path(path) if path else SCHEMA_PATH))


@functools.cache
def _load_schema(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config schema {p} not found (is the repository complete?)")
    return load_yaml(p)


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


def check_finite(node: Any, path: str = "") -> None:
    """Refuse a number that is not finite (``.nan``, ``.inf``) anywhere in ``node``: no setting
    of this project means anything with one (``lr: .nan`` trains on NaN, ``lambd: .inf``
    overflows the loss), and JSON Schema's bounds do not catch NaN."""
    if isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(
            f"config key '{path or '<top level>'}': {node!r} is not a finite number; give a "
            "finite value"
        )
    if isinstance(node, Mapping):
        for k, v in node.items():
            check_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            check_finite(v, f"{path}.{i}")


def check_mels(mels: Mapping[str, Any], where: str = "mels") -> None:
    """The front-end's settings fit each other and the sample rate
    (:func:`abt.data.mel_settings.mel_problems`); a :class:`ConfigError` listing what does not."""
    from abt.data.mel_settings import mel_problems

    problems = mel_problems(mels)
    if problems:
        raise ConfigError(f"config section '{where}': " + "; ".join(problems))


def validate_config(cfg: dict[str, Any], schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``cfg`` in place (filling defaults) and return it; raise :class:`ConfigError`.
    Beyond the schema: no number is non-finite, and a ``mels`` section passes
    :func:`check_mels`."""
    schema = schema or load_schema()
    check_finite(cfg)
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        msgs = "\n  ".join(_describe(e) for e in errors[:10])
        raise ConfigError(f"invalid configuration:\n  {msgs}")
    if isinstance(cfg.get("mels"), Mapping):
        check_mels(cfg["mels"])
    return cfg


def validate_sections(
    partial: dict[str, Any], schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate the top-level sections present in ``partial`` (filling their defaults in place),
    e.g. ``{"pretrain": {...}}`` of a resolved run; the schema's other sections are not needed."""
    schema = schema or load_schema()
    sub = {**schema, "required": [], "properties": {k: schema["properties"][k] for k in partial}}
    return validate_config(partial, sub)


def schema_defaults(path: str, value: Any = None, schema: Mapping[str, Any] | None = None) -> Any:
    """What validation makes of ``value`` (default: an empty mapping) at the dotted config
    ``path`` -- its defaults filled in, checked against the schema: ``schema_defaults("mels")``
    is the whole front-end, ``schema_defaults("pretrain.augment.blocks", [{"name": "rrc"}])``
    the block with every parameter. The one way code outside the configuration asks for a
    default (the schema owns them all)."""
    parts = path.split(".")
    given = parts if value is not None or len(parts) == 1 else parts[:-1]  # else: its default
    doc: Any = {} if value is None else copy.deepcopy(value)
    for k in reversed(given):
        doc = {k: doc}
    out = validate_sections(doc, schema)
    for k in parts:
        out = out[k]
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """One configuration file (YAML or JSON), read by :func:`load_yaml`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    cfg = load_yaml(p) or {}
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
