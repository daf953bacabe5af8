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
