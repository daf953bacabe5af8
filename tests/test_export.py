"""``abt export``: a finished run as a publishable folder (safetensors + config.json + model card)
that ``abt.hear.load_model`` and ``abt embed`` read with bit-identical embeddings."""

import hashlib
import json
import pickle
import shutil

import defaults
import numpy as np
import pytest
import soundfile as sf
import torch
from fakedata import tiny_run

import abt
from abt.checkpoint import (
    CheckpointError,
    read_checkpoint,
    read_export,
    weights_digest,
)
from abt.cli import main as abt_cli
from abt.data.store import MelStore
from abt.evaluation.scores import scores_table
from abt.hear import load_model
from abt.plan import hear_dir, run_dir
from abt.report.stats import interval, load_task_items

SR = 16000


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    tiny_run(root)
    return root


@pytest.fixture(scope="module")
def run(proj):
    return proj / run_dir("audiontt", "baseline", 0)


def fake_hear(hdir, variant="baseline"):
    """A run's HEAR results as the workflow leaves them: scores.csv and the kit's predictions.
    EnvSounds: 6 of 8 test clips right; Pitch: two folds, 3/4 and 1/4 (fold mean 0.5)."""
    tasks = {
        "embedded_envsounds": ("top1_acc", {"test": [1, 1, 0, 1, 0, 1, 1, 1]}),
        "embedded_pitch": ("pitch_acc", {"fold00": [1, 1, 0, 1], "fold01": [0, 0, 1, 0]}),
    }
    rows = []
    for task, (metric, splits) in tasks.items():
        d = hdir / "predictions" / task
        d.mkdir(parents=True)
        (d / "task_metadata.json").write_text(json.dumps({"evaluation": [metric]}))
        for split, right in splits.items():
            y = torch.arange(len(right)) % 2
            guess = torch.where(torch.tensor(right) == 1, y, 1 - y)
            with open(d / f"{split}.predictions.pkl", "wb") as fh:
                pickle.dump(
                    {
                        "target": torch.nn.functional.one_hot(y, 2).float(),
                        "prediction": torch.nn.functional.one_hot(guess, 2).float(),
                    },
                    fh,
                )
            rows.append(
                dict(
                    task=task,
                    encoder="audiontt",
                    variant=variant,
                    seed=0,
                    grid="fast",
                    split=split,
                    metric=metric,
                    value=float(np.mean(right)),
                    primary=True,
                )
            )
        mean = float(np.mean([np.mean(r) for r in splits.values()]))
        rows.append(
            dict(
                task=task,
                encoder="audiontt",
                variant=variant,
                seed=0,
                grid="fast",
                split="mean",
                metric=metric,
                value=mean,
                primary=True,
            )
        )
    scores_table(rows).to_csv(hdir / "scores.csv", index=False)
    return tasks


@pytest.fixture(scope="module")
def exported(proj, run, tmp_path_factory):
    fake_hear(proj / hear_dir("audiontt", "baseline", 0))
    le = proj / "results/linear_eval/audiontt/baseline/seed0.json"
    le.parent.mkdir(parents=True)
    le.write_text(
        json.dumps(
            {
                "task": "embedded_envsounds",
                "probe_metric": "top1_acc",
                "probe_100": 0.625,
                "probe_5pc_mean": 0.4,
                "probe_5pc_std": 0.05,
            }
        )
    )
    out = tmp_path_factory.mktemp("pub") / "audiontt"
    assert abt_cli(["export", str(run), str(out)]) == 0
    return out


def test_the_folder_holds_weights_config_run_files_and_a_card(exported, run, proj):
    names = sorted(p.name for p in exported.iterdir())
    assert names == sorted(
        [
            "model.safetensors",
            "config.json",
            "hparams.yaml",
            "summary.json",
            "train_metrics.csv",
            "training_curves.png",
            "README.md",
        ]
    )
    # no linear-probe monitoring in this run: its empty epoch_metrics.csv is not shipped
    assert (run / "epoch_metrics.csv").stat().st_size == 0
    assert (exported / "hparams.yaml").read_bytes() == (run / "hparams.yaml").read_bytes()
    cfg = json.loads((exported / "config.json").read_text())
    ck = read_checkpoint(run / "model.ckpt")
    prov = ck["config"]["provenance"]
    assert cfg["format"] == "abt-export/1" and cfg["checkpoint_format"] == "abt-encoder/1"
    assert cfg["abt_version"] == abt.__version__
    assert cfg["encoder"] == ck["encoder"] and cfg["encoder"]["arch"] == "audiontt"
    assert cfg["mels"] == ck["mels"] and cfg["mels"]["n_mels"] == 64
    assert cfg["norm"] == ck["norm"] and set(cfg["norm"]) == {"mode", "mean", "std"}
    assert cfg["input_frames"] == 96 and cfg["random_init"] is False
    summary = json.loads((run / "summary.json").read_text())
    assert cfg["run_digest"] == prov["run"] == summary["provenance"]["run"]
    store = MelStore(proj / "results/mels/pretrain/train")
    assert cfg["store_fingerprint"] == prov["store"] == store.fingerprint
    assert cfg["code_digest"] == prov["code"]
    assert cfg["weights"]["content_sha256"] == weights_digest(ck["state_dict"])
    sha = hashlib.sha256((run / "model.ckpt").read_bytes()).hexdigest()
    assert cfg["source_checkpoint"] == {"file": "model.ckpt", "sha256": sha}
    from safetensors.torch import load_file

    sd = load_file(str(exported / "model.safetensors"))
    assert set(sd) == set(ck["state_dict"]) == set(cfg["weights"]["tensors"])


def test_export_and_checkpoint_give_bit_identical_embeddings(exported, run, tmp_path):
    a, b = read_checkpoint(run / "model.ckpt"), read_export(exported)
    assert {k: v for k, v in a.items() if k != "state_dict"} == {
        k: v for k, v in b.items() if k != "state_dict"
    }
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert v.dtype == b["state_dict"][k].dtype and torch.equal(v, b["state_dict"][k]), k
    m1, m2 = load_model(str(run / "model.ckpt")), load_model(str(exported))
    x = 0.1 * torch.randn(3, 27000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(m1.scene(x), m2.scene(x))
    for u, v in zip(m1.timestamps(x), m2.timestamps(x), strict=True):
        assert torch.equal(u, v)
    d = tmp_path / "audio"
    d.mkdir()
    sf.write(d / "a.wav", 0.1 * np.random.default_rng(0).standard_normal((33000, 2)), 44100)
    for name, model in (("ck", run / "model.ckpt"), ("ex", exported)):
        assert abt_cli(["embed", str(model), str(d), "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "ck/a.wav.npy").read_bytes() == (tmp_path / "ex/a.wav.npy").read_bytes()


def test_the_card_reports_training_data_and_hear_scores_with_intervals(exported, proj):
    card = (exported / "README.md").read_text()
    assert "untrained" not in card.lower()
    assert "2 epochs" in card and "4 optimiser steps" in card and "batch size 8" in card
    assert "| clips | 16 of 16 inputs (16 ok;" in card
    hdir = proj / hear_dir("audiontt", "baseline", 0)
    for task, label, score in (
        ("embedded_envsounds", "EnvSounds", 0.75),
        ("embedded_pitch", "Pitch", 0.5),
    ):
        lo, hi = interval(load_task_items(hdir / "predictions" / task, task).replicates())
        assert f"| {label} |" in card
        assert f"| {score:.3f} | {lo:.3f}–{hi:.3f} |" in card
        assert lo < score < hi
    assert "0.625 with 100 % of the training labels" in card  # the linear evaluation
    assert "@mastersthesis" in card and "Jonah Anton" in card and "Imperial College London" in card
    assert "Audio Barlow Twins: Self-Supervised Audio Representation Learning" in card
    assert "![training curves](training_curves.png)" in card
    assert "| embedding size | 3072" in card and "# (1, 3072)" in card


def test_a_run_outside_the_workflow_layout_is_not_evaluated_and_store_can_be_given(
    run, proj, tmp_path
):
    loose = tmp_path / "myrun"
    shutil.copytree(run, loose)
    assert abt_cli(["export", str(loose), str(tmp_path / "e1")]) == 0
    card = (tmp_path / "e1" / "README.md").read_text()
    assert "Not evaluated" in card and "was not found next to the run" in card
    store = proj / "results/mels/pretrain/train"
    assert (
        abt_cli(
            [
                "export",
                str(loose),
                str(tmp_path / "e2"),
                "--store",
                str(store),
                "--hear",
                str(proj / hear_dir("audiontt", "baseline", 0)),
            ]
        )
        == 0
    )
    card = (tmp_path / "e2" / "README.md").read_text()
    assert "| clips | 16 of 16 inputs" in card and "| EnvSounds |" in card
    other = tmp_path / "other"
    shutil.copytree(store, other)
    st = json.loads((other / "stats.json").read_text())
    st["fingerprint"] = "0" * 64
    (other / "stats.json").write_text(json.dumps(st))
    assert abt_cli(["export", str(loose), str(tmp_path / "e3"), "--store", str(other)]) == 2
    assert not (tmp_path / "e3").exists()


def test_a_random_initialisation_says_it_is_untrained(proj, tmp_path):
    st = MelStore(proj / "results/mels/pretrain/train")
    rdir = proj / run_dir("audiontt", "random_init", 0)
    defaults.random_init(
        rdir / "model.ckpt", "audiontt", "audiontt", {}, st.mean, st.std, st.stats["mels"]
    )
    fake_hear(proj / hear_dir("audiontt", "random_init", 0), variant="random_init")
    out = tmp_path / "rand"
    assert abt_cli(["export", str(rdir), str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "**This encoder is untrained.**" in card and "random initialisation (seed 0)" in card
    assert "random-initialisation" in card.split("---")[1]  # the hub tags
    assert "| EnvSounds |" in card  # the random init's own HEAR scores
    assert json.loads((out / "config.json").read_text())["random_init"] is True
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


def test_out_is_never_overwritten_or_inside_the_run(exported, run, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.pdf").write_text("keep me")
    for args in (
        [str(run), str(busy)],
        [str(run), str(busy), "--force"],
        [str(run), str(run / "export"), "--force"],
        [str(run), str(run.parent), "--force"],
        [str(tmp_path), str(tmp_path / "x")],
    ):
        assert abt_cli(["export", *args]) == 2, args
    err = capsys.readouterr().err
    assert "not empty" in err and "not an abt export" in err and "inside the run folder" in err
    assert "holds the run folder" in err and "holds no model.ckpt" in err
    assert (busy / "thesis.pdf").read_text() == "keep me" and not (run / "export").exists()
    again = tmp_path / "again"
    shutil.copytree(exported, again)
    (again / "stale.txt").write_text("from an earlier export")
    assert abt_cli(["export", str(run), str(again), "--force"]) == 0
    assert not (again / "stale.txt").exists() and (again / "README.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_damaged_export_is_a_clear_error_naming_the_file(exported, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    def copy(name):
        d = tmp_path / name
        shutil.copytree(exported, d)
        return d

    d = copy("json")
    (d / "config.json").write_text('{"format": "abt-export/1",')
    with pytest.raises(CheckpointError, match=r"config\.json cannot be read as JSON"):
        load_model(str(d))
    d = copy("fmt")
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "format": "hf/1"}))
    with pytest.raises(CheckpointError, match="not an abt export"):
        read_export(d)
    d = copy("nokey")
    (d / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "norm"}))
    with pytest.raises(CheckpointError, match=r"config\.json lacks key\(s\) \['norm'\]"):
        read_export(d)
    sd = load_file(str(exported / "model.safetensors"))
    d = copy("missing")
    first = sorted(sd)[0]
    save_file({k: v for k, v in sd.items() if k != first}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"model\.safetensors does not hold .*{first}"):
        read_export(d)
    d = copy("tampered")  # same names, dtypes and shapes; one weight changed
    w = next(k for k in sorted(sd) if sd[k].is_floating_point())
    save_file({k: (v + 1 if k == w else v) for k, v in sd.items()}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="content digest .* do not belong together"):
        read_export(d)
    d = copy("garbage")
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors"):
        read_export(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        read_export(d)
    with pytest.raises(CheckpointError, match="folder without config.json"):
        read_export(tmp_path)
    assert abt_cli(["embed", str(d), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err
