"""The schema's defaults as the tests' constructors take them: the code has no defaults of its
own for configuration (the schema, workflow/schemas/config.schema.yaml, owns them all)."""

from typing import Any

from abt.config import schema_defaults
from abt.data.audio import LoadPolicy
from abt.data.mel import MelConfig


def mels(**over: Any) -> MelConfig:
    """The configuration's front-end (thesis §4.1), with ``over`` replaced."""
    return MelConfig.from_dict({**schema_defaults("mels"), **over})


def policy(**over: Any) -> LoadPolicy:
    """The configuration's loading policy (``preprocess``), with ``over`` replaced."""
    cfg = mels()
    return LoadPolicy.from_config(cfg.to_dict(), {**schema_defaults("preprocess"), **over})


def block(name: str, **over: Any) -> dict[str, Any]:
    """The parameters of augmentation block ``name`` (without the name; the schema's defaults),
    ``over`` replaced (not checked: a test may pass what the block must refuse)."""
    (spec,) = schema_defaults("pretrain.augment.blocks", [{"name": name}])
    return {**{k: v for k, v in spec.items() if k != "name"}, **over}


BLOCKS = schema_defaults("pretrain.augment.blocks")  # the thesis's AA module


def store_settings(stats_crops: int | None = None, **over: Any) -> Any:
    """The configuration's store settings (``mels``, ``preprocess``, ``pretrain.pad``), with
    ``stats_crops`` random crops for the statistics and other fields of ``over`` replaced
    (``pad``, ``seed`` and ``crop_frames`` go to the statistics)."""
    from abt.data.store import StoreSettings

    pre = schema_defaults("preprocess")
    st = StoreSettings.from_config(schema_defaults("mels"), pre, schema_defaults("pretrain")["pad"])
    stats = {k: over.pop(k) for k in ("pad", "seed", "crop_frames") if k in over}
    if stats_crops is not None:
        stats["n_crops"] = stats_crops
    if stats:
        import dataclasses

        st = st.replace(stats=dataclasses.replace(st.stats, **stats))
    return st.replace(**over) if over else st


def stats_settings(n_crops: int, **over: Any) -> Any:
    return store_settings(n_crops, **over).stats


def classifier(**over: Any) -> dict[str, Any]:
    """``monitor.classifier``: the linear probe's training (thesis §4.2.2)."""
    return {**schema_defaults("monitor.classifier"), **over}


def objective(**over: Any) -> dict[str, Any]:
    """``pretrain.objective``'s weights (alpha, lambd), ``over`` replaced or added."""
    return {**{k: v for k, v in schema_defaults("pretrain.objective").items() if k != "name"},
            **over}  # fmt: skip


def optimizer(name: str, **over: Any) -> dict[str, Any]:
    """``build_optimizer`` keyword arguments of optimiser ``name`` (its schema defaults and the
    reference batch size), ``over`` replaced or added."""
    opt = {k: v for k, v in schema_defaults("optimizers.x", {"name": name}).items() if k != "name"}
    return {"reference_batch_size": schema_defaults("pretrain")["reference_batch_size"], **opt,
            **over}  # fmt: skip


def random_init(path, key, arch, kwargs, mean, std, mels_=None, **over):  # noqa: ANN001, ANN201
    """:func:`abt.checkpoint.save_random_init` with the configuration's front-end, crop, seed,
    normalisation and precision (``over`` replaces them)."""
    from abt.checkpoint import save_random_init

    pre = schema_defaults("pretrain")
    opts = {"seed": schema_defaults("run")["seed"], "input_frames": pre["crop_frames"],
            "norm_mode": pre["augment"]["norm"], "precision": "fp32", **over}  # fmt: skip
    full = {**schema_defaults("mels"), **dict(mels_ or {})}
    return save_random_init(path, key, arch, kwargs, mean, std, full, **opts)


def wave_settings(stats_crops: int | None = None, **over: Any) -> Any:
    """:func:`store_settings` of a waveform store: its samples' dtype is ``waves.dtype``."""
    return store_settings(stats_crops, **{"dtype": schema_defaults("waves")["dtype"], **over})


def low_shot() -> dict[str, int]:
    """``probe_scores``'s label budget (``monitor.per_class`` clips per class, ``subsets``)."""
    mon = schema_defaults("monitor")
    return {"per_class": mon["per_class"], "n_subsets": mon["subsets"]}


def prepare_options(cls: Any = None, **over: Any) -> Any:
    """``data.prepare``'s options as ``cls`` (default :class:`PrepareOptions`) takes them,
    ``over`` replaced or added."""
    from abt.data.prepare_hear import PrepareOptions

    return (cls or PrepareOptions)(**{**schema_defaults("data.prepare"), **over})
