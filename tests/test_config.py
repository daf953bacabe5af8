"""The one config schema: shipped configs validate, typos fail naming the key, defaults fill."""

import copy

import pytest
import yaml

from abt.config import REPO_ROOT, ConfigError, deep_merge, load_config, validate_config


def shipped():
    with open(REPO_ROOT / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_shipped_config_validates():
    cfg = load_config(REPO_ROOT / "config.yaml")
    assert cfg["mels"]["n_mels"] == 64 and cfg["mels"]["hop_length"] == 160


@pytest.mark.parametrize(
    "path,key",
    [
        (("mels",), "n_mel"),
        ((), "mel"),
        (("preprocess", "stats"), "ncrops"),
        (("data", "pretrain"), "sorce"),
    ],
)
def test_typo_fails_naming_the_key(path, key):
    cfg = shipped()
    node = cfg
    for p in path:
        node = node[p]
    node[key] = 1
    dotted = ".".join((*path, key))
    with pytest.raises(ConfigError, match=f"'{dotted}' is not allowed"):
        validate_config(cfg)


def test_wrong_type_and_enum_fail_naming_the_key():
    cfg = shipped()
    cfg["preprocess"]["on_silent"] = "drop"
    with pytest.raises(ConfigError, match="preprocess.on_silent"):
        validate_config(cfg)


def test_defaults_are_filled():
    cfg = shipped()
    del cfg["preprocess"]["stats"]
    del cfg["mels"]["f_max"]
    validate_config(cfg)
    assert cfg["preprocess"]["stats"] == {"n_crops": 10000, "crop_frames": 96, "seed": 0}
    assert cfg["mels"]["f_max"] == 7800.0


def test_deep_merge_overrides_nested_keys_only():
    base = {"a": {"b": 1, "c": 2}, "d": [1, 2]}
    out = deep_merge(base, {"a": {"c": 3}, "d": [9]})
    assert out == {"a": {"b": 1, "c": 3}, "d": [9]} and base["a"]["c"] == 2
    assert deep_merge(copy.deepcopy(base), {}) == base


# ------------------------------------------------------------ beyond the schema


def test_a_repeated_key_is_an_error_naming_the_file_and_lines(tmp_path):
    """Regression: `pretrain:` twice in an override kept only the last block (batch 128 trained
    where the user wrote 8)."""
    p = tmp_path / "over.yaml"
    p.write_text("pretrain:\n  batch_size: 8\nmels:\n  n_mels: 64\npretrain:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"over.yaml, line 5: key 'pretrain' appears a second "
                       r"time in the same mapping \(first on line 1\)"):  # fmt: skip
        load_config(REPO_ROOT / "config.yaml", overrides=[p])
    p.write_text("pretrain:\n  batch_size: 8\n  epochs: 3\n  batch_size: 16\n")  # nested too
    with pytest.raises(ConfigError, match="line 4: key 'batch_size' appears a second time"):
        load_config(REPO_ROOT / "config.yaml", overrides=[p])


def test_yaml_merge_keys_are_not_repeated_keys():
    from abt.config import parse_yaml

    doc = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert doc["other"] == {"x": 1, "y": 3}


def test_every_yaml_the_project_reads_refuses_repeated_keys(tmp_path):
    from abt.sweeps import best_params

    p = tmp_path / "best_params.yaml"
    p.write_text("trial: 3\nparams:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match="best_params.yaml, line 4: key 'lr'"):
        best_params(p)


@pytest.mark.parametrize(
    "mels, message",
    [
        ({"f_min": 9000.0, "f_max": 7800.0}, r"f_min \(9000\) must be below f_max \(7800\)"),
        ({"f_min": 7800.0, "f_max": 7800.0}, r"f_min \(7800\) must be below f_max"),
        ({"n_fft": 512, "win_length": 1024}, r"win_length \(1024\) must be at most n_fft \(512\)"),
    ],
)
def test_front_end_settings_must_fit_each_other(mels, message):
    """Regression: f_min above f_max built a store of 30 constant clips (per-bin std 4.6e-5);
    n_fft < win_length passed and failed later with a traceback."""
    cfg = shipped()
    cfg["mels"].update(mels)
    with pytest.raises(ConfigError, match=f"config section 'mels': {message}"):
        validate_config(cfg)
    from abt.data.mel import MelConfig

    with pytest.raises(ValueError, match=f"mels: {message}"):  # the front-end refuses them too
        MelConfig(**cfg["mels"])


def test_f_max_above_nyquist_is_refused():
    from abt.config import check_mels

    with pytest.raises(ConfigError, match=r"f_max \(9000\) must be at most half the sample rate"):
        check_mels({"sample_rate": 16000, "f_min": 0.0, "f_max": 9000.0})


@pytest.mark.parametrize(
    "path, value",
    [(("optimizers", "lars", "lr"), float("nan")),
     (("pretrain", "objective", "lambd"), float("nan")),
     (("pretrain", "objective", "alpha"), float("inf")),
     (("mels", "f_max"), float("-inf"))],
)  # fmt: skip
def test_non_finite_numbers_are_refused_naming_the_key(path, value):
    """Regression: `lr: .nan` and `lambd: .nan` passed check-config."""
    cfg = shipped()
    node = cfg
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=rf"config key '{'.'.join(path)}': .* is not a finite"):
        validate_config(cfg)


def test_a_study_x_must_name_a_column_of_the_ablation_summaries():
    """Regression: `studies.<name>.x` naming no column passed check-config and failed after
    the study's runs."""
    from abt.checks import check_config

    cfg = shipped()
    cfg["studies"]["batch_size"]["x"] = "batchsize"
    with pytest.raises(ConfigError, match=r"'studies.batch_size.x': 'batchsize' is not a column "
                       r".* \(did you mean batch_size, patch_size\?\)"):  # fmt: skip
        check_config(cfg, inputs=False)


def test_the_x_columns_are_what_an_ablation_summary_derives():
    from abt import plan
    from abt.report.fields import DERIVED_FIELDS, derived_fields
    from abt.runspec import resolve

    cfg = load_config(REPO_ROOT / "config.yaml", overrides=[REPO_ROOT / "config/paper.yaml"])
    run = resolve(cfg, plan.ablation_encoder(cfg, "mask_64x2_0.2"), "mask_64x2_0.2", 0)
    assert list(derived_fields(run.to_dict())) == list(DERIVED_FIELDS)
    xs = {st["x"] for st in cfg["studies"].values() if st["x"]}
    assert {"batch_size", "lambd", "mask_ratio", "crop_frames"} <= xs <= set(DERIVED_FIELDS)
