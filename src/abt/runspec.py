"""One pre-training run's specification, resolved once (torch-free).

:func:`resolve` is the only place where a run's configuration is put together: the variant's
overrides (``ablation_defaults``, then the ablation), the encoder and its optimiser, the global
seed, a sweep's parameters; it validates the result against the schema (the only source of
default values) and returns a frozen :class:`RunSpec`. The trainer, the sweeps, the probe and the
checkpoint read that; ``hparams.yaml``, ``run.json`` (torchrun) and checkpoints hold
:meth:`RunSpec.to_dict`, which :meth:`RunSpec.from_dict` reads back.

Conversions happen here only: in a :class:`RunSpec` a ViT's ``patch_size`` is a tuple (what the
encoders take); in :meth:`RunSpec.to_dict` (YAML/JSON) every tuple is a list.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from abt.config import ConfigError, deep_merge, load_schema, validate_sections

#: ``pretrain`` keys that may differ between the attempts of one run (not compared on resume)
VOLATILE_PRETRAIN_KEYS = ("log_every", "checkpoint_every", "speed", "on_stale_resume")


class SweepError(ConfigError):
    """A sweep parameter path or value that does not fit the run; the message says why."""


def plain(x: Any) -> Any:
    """Mappings -> dicts with string keys, tuples -> lists (YAML/JSON form)."""
    if isinstance(x, Mapping):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    return x


def _encoder_form(enc: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(enc))
    kw = dict(out.get("kwargs") or {})
    if kw.get("patch_size") is not None:
        kw["patch_size"] = tuple(int(p) for p in kw["patch_size"])
    out["kwargs"] = kw
    return out


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything one pre-training run needs (treat as immutable: use :meth:`replace`)."""

    encoder: dict[str, Any]  # key, arch, kwargs, precision
    optimizer: dict[str, Any]  # key, name and the optimiser's settings
    pretrain: dict[str, Any]  # the complete ``pretrain`` section
    mels: dict[str, Any]
    seed: int
    variant: str = "baseline"
    from_sweep: dict[str, Any] | None = None

    # mapping-style read access: run["pretrain"]["epochs"]
    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def replace(self, **changes: Any) -> RunSpec:
        return RunSpec.from_dict({**self.to_dict(), **plain(changes)})

    def with_pretrain(self, **changes: Any) -> RunSpec:
        """A copy with ``pretrain`` keys replaced (mappings merged)."""
        return self.replace(pretrain=deep_merge(self.pretrain, changes))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if d["from_sweep"] is None:
            d.pop("from_sweep")
        return plain(copy.deepcopy(d))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> RunSpec:
        """Read a resolved run (``hparams.yaml``, ``run.json``); validates it against the schema
        and fills defaults of keys it lacks."""
        if isinstance(d, RunSpec):
            return d
        missing = [k for k in ("encoder", "optimizer", "pretrain", "mels", "seed") if k not in d]
        if missing:
            raise ConfigError(f"a run specification needs the keys {missing} (got {sorted(d)})")
        enc = plain(d["encoder"])
        key = enc.get("key", enc.get("arch"))
        opt = plain(d["optimizer"])
        opt_key = opt.get("key", opt.get("name"))
        sections = validate_sections(
            {
                "pretrain": plain(d["pretrain"]),
                "mels": plain(d["mels"]),
                # an encoder entry names its optimiser; the run's is the `optimizer` section
                "encoders": {
                    key: {**{k: v for k, v in enc.items() if k != "key"}, "optimizer": opt_key}
                },  # fmt: skip
                "optimizers": {opt_key: {k: v for k, v in opt.items() if k != "key"}},
            },
            schema,
        )
        encoder = {k: v for k, v in sections["encoders"][key].items() if k != "optimizer"}
        return cls(
            encoder=_encoder_form({"key": key, **encoder}),
            optimizer={"key": opt_key, **sections["optimizers"][opt_key]},
            pretrain=sections["pretrain"],
            mels=sections["mels"],
            seed=int(d["seed"]),
            variant=str(d.get("variant", "baseline")),
            from_sweep=plain(d["from_sweep"]) if d.get("from_sweep") else None,
        )

    def identity(self) -> dict[str, Any]:
        """What makes two attempts the same run: everything but the volatile keys."""
        d = self.to_dict()
        for k in VOLATILE_PRETRAIN_KEYS:
            d["pretrain"].pop(k, None)
        return d

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------- resolving


def variants(cfg: Mapping[str, Any]) -> list[str]:
    return ["baseline", *sorted(cfg.get("ablations") or {})]


def variant_config(cfg: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The full configuration of one variant: ablation defaults, then the ablation's overrides."""
    if variant == "baseline":
        return dict(cfg)
    abl = cfg.get("ablations") or {}
    if variant not in abl:
        raise ConfigError(f"unknown variant {variant!r}; known: {variants(cfg)}")
    merged = deep_merge(cfg, cfg.get("ablation_defaults") or {})
    return deep_merge(merged, {k: v for k, v in abl[variant].items() if k != "description"})


def resolve(
    cfg: Mapping[str, Any],
    encoder: str | None = None,
    variant: str = "baseline",
    seed: int = 0,
    *,
    overrides: Mapping[str, Any] | None = None,
    label: str | None = None,
    schema: Mapping[str, Any] | None = None,
) -> RunSpec:
    """The run of ``encoder`` (default: ``pretrain.encoder``) in ``variant`` with seed index
    ``seed`` (added to ``run.seed``). ``overrides`` are merged into ``pretrain`` (sweeps, tests;
    ``pretrain.optimizer`` names another optimiser); ``label`` replaces the variant name in the
    outputs. A sweep's best parameters are set on the resolved run by :func:`apply_params` (in
    the pre-training job, which records them)."""
    vc = variant_config(cfg, variant)
    fixed = (cfg.get("ablations") or {}).get(variant, {}).get("pretrain", {}).get("encoder")
    key = encoder or (overrides or {}).get("encoder") or vc["pretrain"]["encoder"]
    if fixed and fixed != key:
        raise ConfigError(
            f"ablation {variant!r} is defined for encoder {fixed!r}; target "
            f"results/pretrain/{fixed}/{variant}/... instead of encoder {key!r}"
        )
    pre = deep_merge(vc["pretrain"], dict(overrides or {}))
    encoders = vc["encoders"]
    if key not in encoders:
        raise ConfigError(
            f"config key 'pretrain.encoder': unknown encoder {key!r}; known: {sorted(encoders)}"
        )
    enc = encoders[key]
    opt_key = pre.get("optimizer") or enc["optimizer"]
    if opt_key not in vc["optimizers"]:
        raise ConfigError(
            f"encoder {key!r} uses optimizer {opt_key!r}, which is not a key of 'optimizers' "
            f"(known: {sorted(vc['optimizers'])})"
        )
    pre["encoder"], pre["optimizer"] = key, opt_key
    spec = {
        "encoder": {"key": key, **enc},
        "optimizer": {"key": opt_key, **vc["optimizers"][opt_key]},
        "pretrain": pre,
        "mels": vc["mels"],
        "seed": int(cfg["run"]["seed"]) + int(seed),
        "variant": label or variant,
    }
    return RunSpec.from_dict(spec, schema or load_schema())


# ------------------------------------------------------------------------------ sweep params


def _set_path(obj: Any, parts: list[str], value: Any, full: str) -> None:
    key, rest = parts[0], parts[1:]
    if isinstance(obj, list):
        if key.isdigit():
            idx = int(key)
        else:  # a block of augment.blocks by name
            names = [b.get("name") if isinstance(b, Mapping) else None for b in obj]
            if key not in names:
                raise SweepError(f"sweep parameter {full!r}: no list item named {key!r} ({names})")
            idx = names.index(key)
        if idx >= len(obj):
            raise SweepError(f"sweep parameter {full!r}: index {idx} out of range")
        if rest:
            _set_path(obj[idx], rest, value, full)
        else:
            obj[idx] = value
        return
    if not isinstance(obj, dict):
        raise SweepError(f"sweep parameter {full!r}: cannot descend into {type(obj).__name__}")
    if rest:
        if key not in obj:
            raise SweepError(f"sweep parameter {full!r}: no key {key!r} (keys: {sorted(obj)})")
        _set_path(obj[key], rest, value, full)
    else:
        obj[key] = value


def apply_params(
    run: Mapping[str, Any] | RunSpec, params: Mapping[str, Any], *, record: str | None = None
) -> Any:
    """A copy of a run with sweep parameters (dotted paths) set: ``optimizer.<key>`` or
    ``pretrain.<path>`` (inside ``augment.blocks`` a block is addressed by its name, list items by
    index). A :class:`RunSpec` gives a :class:`RunSpec`, validated once; a mapping gives a
    mapping. ``record``: the file the parameters came from, kept in the run's ``from_sweep``."""
    out = run.to_dict() if isinstance(run, RunSpec) else copy.deepcopy(plain(run))
    if record is not None:
        out["from_sweep"] = {"file": record, "params": plain(params)}
    for path, value in params.items():
        parts = path.split(".")
        if parts[0] not in ("optimizer", "pretrain"):
            raise SweepError(
                f"sweep parameter {path!r} must start with 'optimizer.' or 'pretrain.'"
            )
        if parts[0] == "optimizer" and len(parts) == 2:
            out["optimizer"][parts[1]] = value  # an optimiser may lack the key (adam: no eta)
        else:
            _set_path(out, parts, value, path)
    return RunSpec.from_dict(out) if isinstance(run, RunSpec) else out
