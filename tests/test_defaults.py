"""One owner of every default: the schema. Every constructor that takes configuration either has
no default for a schema key, or the schema's own (the thesis's numbers live in
workflow/schemas/config.schema.yaml only); and it takes every key of the section it is built
from (none the schema fills is ignored)."""

import inspect
from typing import Any

import pytest

from abt import checkpoint, methods, objective, optim, probe
from abt.augment import AUGMENTATIONS, AugmentationPipeline, PrePostNorm
from abt.config import schema_defaults
from abt.data import store, wavestore
from abt.data.audio import LoadPolicy
from abt.data.embedded import build_embedded
from abt.data.mel import MelConfig
from abt.data.prepare_hear import PrepareOptions
from abt.finetune import FinetuneSettings

EMPTY = inspect.Parameter.empty


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    """Every parameter of ``fn`` (a class: its ``__init__`` and those its ``**kw`` passes to)."""
    if not inspect.isclass(fn):
        return dict(inspect.signature(fn).parameters)
    out: dict[str, inspect.Parameter] = {}
    for c in fn.__mro__:
        if "__init__" in vars(c) and c.__module__.startswith("abt."):
            for k, v in inspect.signature(c.__init__).parameters.items():
                out.setdefault(k, v)
    return out


def _same(code: Any, schema: Any) -> bool:
    if isinstance(code, tuple | list) and isinstance(schema, list):
        return list(code) == schema
    return bool(code == schema)


def _block(name: str) -> dict[str, Any]:
    (spec,) = schema_defaults("pretrain.augment.blocks", [{"name": name}])
    return spec


def _whole(path: str, value: Any = None, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """param -> schema default, for every key of a section (its name left out)."""
    d = schema_defaults(path, value)
    return {k: v for k, v in d.items() if k not in drop}


PRE, PRETRAIN, MON = schema_defaults("preprocess"), schema_defaults("pretrain"), None
CASES = {
    # the front-end and store building (thesis §4.1)
    "MelConfig": (MelConfig, _whole("mels"), True),
    "LoadPolicy": (LoadPolicy, {"sample_rate": schema_defaults("mels")["sample_rate"],
                                **{k: PRE[k] for k in ("min_duration_s", "on_silent",
                                                       "silence_peak")}}, False),
    "StatsSettings": (store.StatsSettings, {**PRE["stats"], "pad": PRETRAIN["pad"]}, True),
    "StoreSettings": (store.StoreSettings, {k: PRE[k] for k in ("dtype", "workers")}, False),
    "MelStore.compute_stats": (store.MelStore.compute_stats,
                               {**PRE["stats"], "pad": PRETRAIN["pad"]}, False),
    # the AA module (§3.2) and each block, waveform blocks too
    **{f"block {n}": (AUGMENTATIONS.get(n), {k: v for k, v in _block(n).items() if k != "name"},
                      True) for n in AUGMENTATIONS.names() if n != "normalize"},
    "AugmentationPipeline": (AugmentationPipeline, {k: PRETRAIN["augment"][k] for k in
                                                    ("blocks", "norm", "post_norm_scope")}, False),
    "PrePostNorm": (PrePostNorm, {"post_norm_scope": PRETRAIN["augment"]["post_norm_scope"]},
                    False),
    # the method (§3.1, §4.3.5), projector and objective
    "symmetric": (methods.SymmetricBarlowTwins, _whole("pretrain.method", {"name": "symmetric"}),
                  True),
    "asymmetric": (methods.AsymmetricBarlowTwins,
                   _whole("pretrain.method", {"name": "asymmetric"}), True),
    "EMA": (objective.EMA, {"tau": _whole("pretrain.method", {"name": "asymmetric"})["ema_decay"],
                            "buffers": "copy"}, False),
    "Projector": (objective.Projector, _whole("pretrain.projector"), True),
    "barlow_twins": (objective.BarlowTwinsLoss, _whole("pretrain.objective"), True),
    # the optimisers (§4.1, §4.1.1) and the learning-rate scaling
    **{f"optimizer {n}": (optim.OPTIMIZERS.get(n), _whole("optimizers.x", {"name": n}), True)
       for n in optim.OPTIMIZERS.names()},
    "LARS": (optim.LARS, {k: _whole("optimizers.x", {"name": "lars"})[k]
                          for k in ("momentum", "eta")}, False),
    "build_optimizer": (optim.build_optimizer,
                        {"reference_batch_size": PRETRAIN["reference_batch_size"]}, False),
    # the linear probe (§4.2.2)
    "ProbeConfig": (probe.ProbeConfig, _whole("monitor.classifier"), True),
    "ProbeMonitor": (probe.ProbeMonitor, {**{k: schema_defaults("monitor")[k] for k in
                                             ("every_epochs", "crop_frames", "crop", "per_class",
                                              "classifier")},
                                          "n_subsets": schema_defaults("monitor")["subsets"]},
                     False),
    "probe_scores": (probe.probe_scores, {"per_class": schema_defaults("monitor")["per_class"],
                                          "n_subsets": schema_defaults("monitor")["subsets"]},
                     False),
    # random-init checkpoints: the run's crop, normalisation, precision, seed
    "save_random_init": (checkpoint.save_random_init, {
        "input_frames": PRETRAIN["crop_frames"], "norm_mode": PRETRAIN["augment"]["norm"],
        "precision": "fp32", "seed": schema_defaults("run")["seed"]}, False),
    # data preparation and the embedded data set
    "PrepareOptions": (PrepareOptions, _whole("data.prepare"), True),
    "build_embedded": (build_embedded, dict(schema_defaults("embedded")), True),
    # fine-tuning (what is fine-tuned, tasks and random_init, is the workflow's choice)
    "FinetuneSettings": (FinetuneSettings, _whole("finetune", drop=("tasks", "random_init")),
                         True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_schema_and_the_code_agree_on_every_default(case):
    fn, keys, whole = CASES[case]
    params = _params(fn)
    for key, want in keys.items():
        assert key in params, f"{case} takes no {key!r}, which the schema fills"
        got = params[key].default
        assert got is EMPTY or _same(got, want), (
            f"{case}({key}={got!r}): the schema's default is {want!r}; the schema owns it -- "
            "remove the code's default"
        )
    if whole:  # every parameter with a default is a schema key, or a named non-configuration one
        # (use_pip_sounds: an option of the Python API, not of the configuration)
        own = {"generator", "eps", "sample_rate", "distributed", "off_diagonal_target",
               "reduce_fn", "resample_quality", "quality", "standardize", "seed", "workers",
               "nesterov", "fused", "params", "scale", "model_params_or_model", "self", "kw",
               "encoder", "projector", "objective", "in_dim", "out_dir",
               "use_pip_sounds"}  # fmt: skip
        extra = {k for k, p in params.items() if p.default is not EMPTY and k not in keys}
        assert extra <= own, f"{case}: defaults for {sorted(extra - own)} outside the schema"
        # and the schema fills every configuration parameter the code requires
        given = {"self", "params", "scale", "in_dim", "encoder", "projector", "objective",
                 "out_dir"}  # fmt: skip
        required = {k for k, p in params.items() if p.default is EMPTY
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}  # fmt: skip
        missing = required - set(keys) - given
        assert not missing, f"{case} requires {sorted(missing)}, which the schema does not fill"


def test_the_store_builders_take_their_settings_from_one_object():
    """The statistics' settings were repeated as keyword defaults in three builders."""
    for fn in (store.build_store, store.pack_store, wavestore.build_wave_store):
        assert "settings" in _params(fn) and _params(fn)["settings"].default is EMPTY
        assert not {"stats_crops", "stats_crop_frames", "stats_seed", "pad"} & set(_params(fn))
    assert _params(store.merge_stores)["stats"].default is EMPTY


def test_the_pipeline_completes_a_block_list_with_the_schema():
    """A block given by its name alone gets the schema's parameters (what an ablation's
    ``blocks: [{name: rrc}]`` relies on) and a misspelt parameter is an error naming it."""
    from abt.augment import block_specs
    from abt.config import ConfigError

    (rrc,) = block_specs([{"name": "rrc"}])
    assert rrc == {
        "name": "rrc",
        "virtual_scale": [1.0, 1.5],
        "freq_scale": [0.6, 1.5],
        "time_scale": [0.6, 1.5],
        "height_limit": "input",
        "method": "separable",
    }
    with pytest.raises(ConfigError, match=r"'pretrain.augment.blocks.0.alhpa' is not allowed"):
        block_specs([{"name": "mixup", "alhpa": 0.3}])
    assert [b["name"] for b in schema_defaults("pretrain.augment.blocks")] == [
        "mixup",
        "rrc",
        "rlf",
    ]  # thesis §3.2
