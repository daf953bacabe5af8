"""Fidelity to the thesis: docs/fidelity.md names only keys the schema has, every
option it documents is reachable from the configuration and changes behaviour, and the thesis's
protocol holds where the code used to depart from it."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakedata import tone_store

from abt.config import REPO_ROOT, ConfigError, load_config, load_schema
from abt.data.store import MelStore
from abt.runspec import resolve
from abt.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
TINY = {"epochs": 2, "batch_size": 8, "projector": {"hidden_dims": [32], "out_dim": 16}}


def cfg():
    return load_config(REPO_ROOT / "config.yaml")


# ---------------------------------------------------------------- docs/fidelity.md <-> schema


def _schema_node(path: str):
    """The schema of a dotted config path: ``*`` or a name under a map of named entries
    (encoders, optimizers, ...), ``blocks[rrc]`` for one augmentation block."""
    node, named = SCHEMA, []
    for part in path.split("."):
        m = re.fullmatch(r"(\w+)\[(\w+)\]", part)
        key, block = (m.group(1), m.group(2)) if m else (part, None)
        props = node.get("properties", {})
        if key in props:
            node = props[key]
            if key == "pretrain" and "properties" not in node:  # an override of `pretrain`
                node = SCHEMA["properties"]["pretrain"]
        elif isinstance(node.get("additionalProperties"), dict):  # a named entry
            named.append((path, key))
            node = node["additionalProperties"]
        else:
            raise KeyError(f"{path}: no {key!r} in the schema")
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].split("/")[-1]]
        if node.get("type") == "array" and "items" in node:
            node = node["items"]
            if "$ref" in node:
                node = SCHEMA["$defs"][node["$ref"].split("/")[-1]]
        if block is not None:  # blocks[rrc]: the branch of that block
            branch = [b["then"] for b in node["allOf"]
                      if b["if"]["properties"]["name"]["const"] == block]  # fmt: skip
            assert branch, f"{path}: no augmentation block {block!r}"
            node = branch[0]
    return node, named


def fidelity_keys():
    keys = []
    for line in (ROOT / "docs/fidelity.md").read_text().splitlines():
        if not re.match(r"^\| [0-9A-Z]+ \|", line):
            continue
        last = line.rstrip().rstrip("|").rsplit("|", 1)[-1]
        keys += [(line.split("|")[1].strip(), k) for k in re.findall(r"`([^`]+)`", last)]
    return keys


def test_every_config_key_in_docs_fidelity_is_in_the_schema():
    keys = fidelity_keys()
    assert len(keys) >= 45
    shipped = cfg()
    for row, key in keys:
        path, _, value = key.partition(": ")
        node, named = _schema_node(path)
        if value:
            assert value in node.get("enum", []), f"row {row}: {key}: {value!r} not allowed"
        for full, name in named:  # a named entry (optimizers.lars_sweep) exists in config.yaml
            if name != "*":
                section = full.split(".")[0]
                assert name in shipped[section], f"row {row}: {full}: no {name!r} in config.yaml"


# --------------------------------------------------------- documented options are reachable


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("fid")
    # some clips shorter than the 96-frame crop
    return tone_store(d, 24, seed=3, seconds=(0.4, 1.6), noise=0.01, stats_crops=100)


def _trainer(run, store, tmp_path):
    return Trainer(run, store, tmp_path / "r", device="cpu", progress=False, log=lambda *_: None)


@pytest.mark.parametrize(
    "block, option, value, attr",
    [
        ("mixup", "push_first", True, "push_first"),  # row E
        ("rrc", "height_limit", "canvas", "height_limit"),  # row 8
        ("rrc", "method", "grid_sample", "method"),  # row F
        ("noise", "mode", "log_mix", "mode"),  # row 9
    ],
)
def test_documented_block_options_reach_the_blocks(store, tmp_path, block, option, value, attr):
    blocks = [{"name": "mixup", "alpha": 0.2, "memory_size": 64}, {"name": "noise", "alpha": 0.2},
              {"name": "rrc"}, {"name": "rlf"}]  # fmt: skip
    for b in blocks:
        if b["name"] == block:
            b[option] = value
    run = resolve(cfg(), overrides={**TINY, "augment": {"blocks": blocks}})
    tr = _trainer(run, store, tmp_path)
    built = {type(b).__name__: b for b in tr.augment.blocks}
    names = {"mixup": "Mixup", "rrc": "RandomResizeCrop", "noise": "GaussianNoise"}
    assert getattr(built[names[block]], attr) == value
    assert np.isfinite(tr.fit()["final_loss"])


def test_documented_method_option_reaches_the_ema_target(store, tmp_path):  # row 22
    method = {"name": "asymmetric", "ema_decay": 0.99, "predictor": False, "buffers": "keep"}
    tr = _trainer(resolve(cfg(), overrides={**TINY, "method": method}), store, tmp_path)
    assert tr.method.target.buffers_mode == "keep"


def test_a_misspelt_block_option_is_rejected_naming_it():
    c = cfg()
    c["pretrain"]["augment"]["blocks"][1]["heigth_limit"] = "canvas"
    with pytest.raises(ConfigError, match=r"blocks\.1\.heigth_limit' is not allowed"):
        from abt.config import validate_config

        validate_config(c, SCHEMA)
    with pytest.raises(ConfigError, match="push_first"):
        resolve(cfg(), overrides={"augment": {"blocks": [{"name": "rrc", "push_first": True}]}})


# ---------------------------------------------------------------- the thesis's protocol


def test_masking_schedule_warm_up_scales_with_the_run_length(store, tmp_path):
    """Finding 8: at the default scale the sine schedule's 10-epoch warm-up outlasted the 3-epoch
    ablation, so the ratio stayed 0; it is now 10 of 100 epochs at any length."""
    c = cfg()
    run = resolve(c, variant="mask_16x8_sine").with_pretrain(batch_size=8)
    epochs = run.pretrain["epochs"]
    assert epochs == c["ablation_defaults"]["pretrain"]["epochs"] < 10  # shorter than 10 epochs
    tr = _trainer(run, store, tmp_path)
    assert tr.mask_warmup_steps == round(0.1 * epochs * tr.steps_per_epoch)
    assert tr.mask_ratio(tr.total_steps - 1) == pytest.approx(0.3)
    assert tr.mask_ratio(tr.total_steps // 2) > 0
    paper = copy.deepcopy(run.to_dict())
    paper["pretrain"]["epochs"] = 100  # config/paper.yaml: exactly the thesis's 10 epochs
    assert _trainer(paper, store, tmp_path).mask_warmup_steps == 10 * tr.steps_per_epoch


def test_store_statistics_pad_like_training(tmp_path, store):
    """Finding 4: the dataset statistics ignored pretrain.pad."""
    from abt.jobs.data import compute_pretrain_mels

    c = cfg()
    pool = Path(store).parent
    (pool / "clips.csv").write_text("clip_id,path\n" + "".join(f"{i},{i}.wav\n" for i in range(24)))
    data = {"source": "folder", "audio_dir": str(pool), "clip_list": str(pool / "clips.csv"),
            "clip_list_format": "abt", "id_column": "clip_id"}  # fmt: skip
    pre = copy.deepcopy(c["preprocess"])
    pre["stats"]["n_crops"] = 200
    a = compute_pretrain_mels(data, c["mels"], pre, "", str(tmp_path / "a"), pad="silence")
    b = compute_pretrain_mels(data, c["mels"], pre, "", str(tmp_path / "b"), pad="zero_log")
    assert (a["pad"], b["pad"]) == ("silence", "zero_log")
    assert b["mean"] > a["mean"] + 0.05  # zero_log pads with 0, far above log-silence (-15.9)
    ref = MelStore(tmp_path / "b").compute_stats(200, 96, pre["stats"]["seed"], pad="zero_log")
    assert (b["mean"], b["std"]) == pytest.approx(ref)


def test_probe_crops_randomly_and_reproducibly():
    """Finding 3: the probe took a centre crop; the thesis crops randomly (seeded here, so every
    evaluation of a run sees the same crops)."""
    from abt.probe import _fit_length

    x = np.arange(300 * 2, dtype=np.float32).reshape(300, 2)
    starts = {int(_fit_length(x, 96, -15.9, np.random.default_rng(s))[0, 0]) // 2
              for s in range(40)}  # fmt: skip
    assert len(starts) > 20 and min(starts) >= 0 and max(starts) <= 300 - 96
    a = [_fit_length(x, 96, -15.9, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    assert int(_fit_length(x, 96, -15.9)[0, 0]) // 2 == (300 - 96) // 2  # monitor.crop: center


def test_sweep_probes_crop_to_96_frames_every_epoch(tmp_path, monkeypatch):
    """Finding 2: sweeps scored trials with the monitoring crop; §4.1.1 crops to 96 frames."""
    from abt import probe, sweeps

    c = cfg()
    c["monitor"]["task"] = "embedded_envsounds"
    c["monitor"]["crop_frames"] = 711  # the paper configuration's monitoring crop
    seen = {}

    class Stop(Exception):
        pass

    def spy(monitor, task_dir, stores_dir, every_epochs=None, crop_frames=None):
        seen.update(every=every_epochs, crop=crop_frames, mode=monitor["crop"])
        raise Stop

    monkeypatch.setattr(probe.ProbeMonitor, "from_config", staticmethod(spy))
    with pytest.raises(Stop):
        sweeps.run_worker(c, "audiontt_lars", tmp_path / "sw", "unused", "unused", "unused")
    assert seen == {"every": 1, "crop": 96, "mode": "random"}


def test_augmentation_sweep_uses_the_thesis_lars_weight_decay():
    """Finding 7: §4.1.1.2 runs the augmentation sweep with LARS weight decay 1e-6."""
    from abt.sweeps import sweep_run_config

    c = cfg()
    assert sweep_run_config(c, "augmentations").optimizer["weight_decay"] == 1e-6
    assert resolve(c).optimizer["weight_decay"] == 1e-5  # the reported runs (§4.1)


@pytest.mark.parametrize("encoder, arch", [("audiontt_bt_lars", "audiontt"),
                                           ("resnet18_bt_lars", "resnet18")])  # fmt: skip
def test_the_side_runs_with_barlow_twins_lars_are_targets_of_their_own(encoder, arch):
    """Fig. 4.4's dashed AudioNTT curve and footnote 17's ResNet-18 run: the same encoder and
    pre-training with (lr weights, lr biases, wd) = (0.1, 0.0024, 1.5e-6), Barlow Twins' LARS
    defaults scaled to batch 128; everything else as the encoder's main run."""
    from abt import plan

    c = cfg()
    side, main = resolve(c, encoder, "baseline", 0), resolve(c, arch, "baseline", 0)
    assert side.encoder["arch"] == main.encoder["arch"] == arch
    opt = {k: side.optimizer[k] for k in ("name", "lr_weights", "lr_biases", "weight_decay")}
    assert opt == {"name": "lars", "lr_weights": 0.1, "lr_biases": 0.0024, "weight_decay": 1.5e-6}
    assert (side.optimizer["momentum"], side.optimizer["eta"]) == (0.9, 0.001)
    assert main.optimizer["lr_weights"] == 0.4  # the thesis's tuned LARS for the reported runs
    assert side.pretrain["encoder"] == encoder and side.mels == main.mels
    assert side.pretrain["optimizer"] == "lars_barlowtwins"
    same = [k for k in main.pretrain if k not in ("encoder", "optimizer")]
    assert {k: side.pretrain[k] for k in same} == {k: main.pretrain[k] for k in same}
    assert plan.run_dir(encoder, "baseline", 0) == f"results/pretrain/{encoder}/baseline/seed0"


@pytest.mark.parametrize("encoder, every", [("audiontt", 5), ("vitc_b_16x8", 2)])
def test_vit_c_is_probed_every_two_epochs(monkeypatch, tmp_path, encoder, every):
    """Finding 9: ViT_C was probed every 5 epochs; the thesis probes it every 2."""
    from abt.jobs import pretrain

    monkeypatch.chdir(tmp_path)  # the run folder "r" is written
    c = cfg()
    seen = {}

    class FakeTrainer:
        def __init__(self, spec, store, run_dir, device=None, callbacks=(), tracker=None):
            seen["every"] = callbacks[0].every

        def fit(self, stop_after_epochs=None, wait_for_lock=False):
            return {}

    monkeypatch.setattr("abt.trainer.Trainer", FakeTrainer)
    c["monitor"]["task"] = "embedded_envsounds"
    pretrain.pretrain(resolve(c, encoder), "s", "r", monitor=c["monitor"],
                      monitor_task_dir="t", monitor_stores="st")  # fmt: skip
    assert seen["every"] == every


def test_paper_configuration_follows_the_thesis_precision():
    """Finding 1: mixed precision for ViT_C only, unless the user opts in."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert "precision" not in paper.get("pretrain", {})  # the paper config keeps `auto`
    for key, enc in base["encoders"].items():
        expected = "mixed" if enc["arch"].startswith("vitc") else None
        assert enc.get("precision") == expected, key


def test_ppn_encoders_are_evaluated_with_the_dataset_statistics(store, tmp_path):
    """Finding 5 (docs/fidelity.md row AM): a PPN-trained checkpoint records norm mode ppn and
    the store's statistics, which the HEAR module and the probes normalise with."""
    from abt.hear import load_model

    aug = {"norm": "ppn", "post_norm_scope": "joint", "blocks": [{"name": "rlf"}]}
    tr = _trainer(resolve(cfg(), overrides={**TINY, "augment": aug}), store, tmp_path)
    tr.fit()
    model = load_model(str(tmp_path / "r" / "model.ckpt"))
    assert model.info["norm_mode"] == "ppn"
    st = MelStore(store)
    assert (model.norm_mean, model.norm_std) == pytest.approx((st.mean, st.std))
