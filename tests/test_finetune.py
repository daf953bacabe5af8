"""Fine-tuning evaluation (abt.finetune): the encoder is trained (and is not when frozen), the
head and encoder learning rates are applied, early stopping restores the best epoch, the result
is deterministic, masking and Mixup do what they say (hand-checked), the interval comes from the
test predictions as the HEAR scores' do, and bad tasks or settings are clear errors."""

import dataclasses
import json
import math
from pathlib import Path

import defaults
import numpy as np
import pytest
import torch
from torch import nn

from abt.checkpoint import load_encoder
from abt.config import REPO_ROOT, load_config, validate_sections
from abt.data.hear_tasks import ClipRecord, TaskSpec, write_task
from abt.data.mel import MelConfig
from abt.data.store import MelStore
from abt.finetune import (
    FinetuneError,
    FinetuneModel,
    FinetuneSettings,
    apply_spans,
    build_finetune_optimizer,
    draw_spans,
    finetune,
    finetune_task,
    load_task_clips,
    mix,
    mixup,
    spec_mask,
)
from abt.hear import HearModel
from abt.jobs.data import compute_task_mels
from abt.report.stats import Split, TaskItems, interval

SR = 16000
CFG = load_config(REPO_ROOT / "config.yaml")
PRE = {**CFG["preprocess"], "workers": 1, "stats": {"n_crops": 16, "crop_frames": 24, "seed": 0}}
#: small enough for a unit test: 3 epochs of 3 batches of 4 clips, 24-frame crops
TINY = {"epochs": 3, "batch_size": 4, "crop_frames": 24, "n_boot": 200, "warmup_epochs": 0.5,
        "masking": {"freq": 6, "time": 6, "n_freq": 1, "n_time": 1},
        "mixup": {"alpha": 0.4}}  # fmt: skip


def settings(**over) -> FinetuneSettings:
    return FinetuneSettings.from_config(
        validate_sections({"finetune": {**TINY, **over}})["finetune"]
    )


def make_task(root, name="toy_ft", *, multilabel=False, n=(12, 6, 6), evaluation=None):
    """A scene task of three tone classes (multilabel: pairs of tones), 0.6 s at 16 kHz."""
    vocab = ("low", "mid", "high")
    freqs = {"low": 300.0, "mid": 900.0, "high": 2400.0}
    spec = TaskSpec(
        task_name=name, embedding_type="scene",
        prediction_type="multilabel" if multilabel else "multiclass",
        split_mode="trainvaltest", splits=("train", "valid", "test"), sample_duration=0.6,
        evaluation=evaluation or (("mAP",) if multilabel else ("top1_acc", "mAP")),
        vocabulary=vocab,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    t = np.arange(int(0.6 * SR)) / SR
    clips = []
    for split, count in zip(spec.splits, n, strict=True):
        for i in range(count):
            labels = [vocab[i % 3]] + ([vocab[(i + 1) % 3]] if multilabel and i % 2 else [])
            x = sum(0.2 * np.sin(2 * np.pi * freqs[lab] * (1 + 0.03 * rng.standard_normal()) * t)
                    for lab in labels)  # fmt: skip
            x = x + 0.02 * rng.standard_normal(t.size)
            clips.append(ClipRecord(split, f"{split}_{i}.wav", x.astype(np.float32), labels))
    task = write_task(root / "tasks", spec, clips, sample_rate=SR)
    stores = root / "stores" / name
    compute_task_mels(str(task), CFG["mels"], PRE, str(stores))
    return task, stores


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    task, stores = make_task(root)
    st = MelStore(stores / "train")
    ckpt = defaults.random_init(root / "model.ckpt", "audiontt", "audiontt", {}, st.mean, st.std,
                                st.stats["mels"])  # fmt: skip
    return {"root": root, "task": task, "stores": stores, "ckpt": ckpt}


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _run(toy, s: FinetuneSettings, **kw):
    enc, ck = load_encoder(toy["ckpt"])
    data = load_task_clips(toy["task"], toy["stores"])
    return enc, finetune_task(enc, data, s, mean=ck["norm"]["mean"], std=ck["norm"]["std"], **kw)


# ----------------------------------------------------------------------------------- training


@pytest.mark.parametrize("freeze", [False, True])
def test_the_encoder_is_trained_unless_frozen(toy, freeze):
    before = _state(load_encoder(toy["ckpt"])[0])
    enc, (res, model, _) = _run(toy, settings(freeze_encoder=freeze))
    after = _state(enc)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if freeze:  # weights and BatchNorm statistics alike
        assert changed == [] and res["freeze_encoder"]
    else:
        weights = [k for k, _ in enc.named_parameters()]
        assert set(weights) <= set(changed), set(weights) - set(changed)
    init = torch.randn(model.head.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.01
    assert not torch.equal(model.head.weight.detach(), init)  # the head is trained either way


def test_head_and_encoder_learning_rates_are_applied(toy):
    """One plain SGD step (no momentum, no decay): every parameter moves by -lr * grad, with the
    head's lr on the head and encoder_lr_ratio times it on the encoder."""
    s = settings(optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},
                 encoder_lr_ratio=0.2)  # fmt: skip
    enc, ck = load_encoder(toy["ckpt"])
    hear = HearModel(enc, MelConfig.from_dict(ck["mels"]), 0.0, 1.0)
    model = FinetuneModel(hear, 3, head_norm=True, seed=0)
    opt = build_finetune_optimizer(model, s)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"weights": 0.05, "no_decay": 0.05, "encoder_weights": pytest.approx(0.01),
                   "encoder_no_decay": pytest.approx(0.01)}  # fmt: skip
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    model.train()
    x = torch.randn(4, 1, 64, 24)
    y = torch.eye(3)[[0, 1, 2, 0]]
    loss = -(y * torch.log_softmax(model(x), 1)).sum(1).mean()
    loss.backward()
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    opt.step()
    for n, p in model.named_parameters():
        w, g = before[n]
        lr = 0.05 if n.startswith("head.") else 0.01
        torch.testing.assert_close(p.detach(), w - lr * g, rtol=0, atol=1e-7, msg=n)
    frozen = build_finetune_optimizer(model, settings(freeze_encoder=True))
    assert [g["name"] for g in frozen.param_groups] == ["weights", "no_decay"]


def test_early_stopping_restores_the_best_epoch(toy, monkeypatch):
    """Validation scores 0.2, 0.5, 0.4, 0.3 (scripted): with patience 2 training stops after
    epoch 4 and the model ends with the weights it had after epoch 2."""
    import abt.finetune as ft

    scores = iter([0.2, 0.5, 0.4, 0.3, 0.9, 0.9])
    monkeypatch.setattr(ft, "_valid_score", lambda model, data: next(scores))
    states = {}
    enc, (res, model, _) = _run(toy, settings(epochs=6, patience=2),
                                on_epoch=lambda e, m, v: states.update({e: _state(m)}))  # fmt: skip
    assert (res["best_epoch"], res["epochs_run"], res["valid"]) == (2, 4, 0.5)
    assert res["stopped_early"] and sorted(states) == [1, 2, 3, 4]
    final = _state(model)
    assert all(torch.equal(final[k], states[2][k]) for k in final)
    assert not all(torch.equal(final[k], states[4][k]) for k in final)


def test_a_fine_tuning_is_deterministic_and_leaves_the_global_generators_alone(toy):
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002  (the legacy global generator must stay untouched)
    cpu, npy = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    outs = []
    for i in range(2):
        out = toy["root"] / f"det{i}" / "ft.json"
        res = finetune(toy["ckpt"], toy["task"], toy["stores"], {**CFG["finetune"], **TINY}, out,
                       device="cpu")  # fmt: skip
        pred = np.load(out.with_name("ft.predictions.npz"))
        outs.append(({k: v for k, v in res.items() if k != "seconds"}, pred["prediction"]))
    assert outs[0][0] == outs[1][0]
    assert np.array_equal(outs[0][1], outs[1][1])
    assert torch.equal(torch.get_rng_state(), cpu)
    assert np.array_equal(np.random.get_state()[1], npy)  # noqa: NPY002


def test_the_result_and_its_interval_come_from_the_test_predictions(toy):
    out = toy["root"] / "res" / "ft.json"
    res = finetune(toy["ckpt"], toy["task"], toy["stores"], {**CFG["finetune"], **TINY}, out,
                   device="cpu")  # fmt: skip
    assert json.loads(out.read_text()) == res
    assert res["task"] == "toy_ft" and res["metric"] == "top1_acc" and res["n_test"] == 6
    assert res["checkpoint"] == str(toy["ckpt"]) and len(res["history"]) == res["epochs_run"]
    pred = np.load(out.with_name("ft.predictions.npz"))
    assert pred["target"].shape == pred["prediction"].shape == (6, 3)
    np.testing.assert_allclose(pred["prediction"].sum(1), 1.0, rtol=1e-5)  # softmax
    correct = (pred["prediction"].argmax(1) == pred["target"].argmax(1)).astype(float)
    items = TaskItems("toy_ft", "top1_acc", [Split("test", "top1_acc", {"correct": correct})])
    assert res["test"] == pytest.approx(correct.mean())
    assert (res["ci_low"], res["ci_high"]) == pytest.approx(interval(items.replicates(200)))
    assert res["ci_low"] <= res["test"] <= res["ci_high"]


def test_a_multilabel_task_is_scored_by_map(tmp_path):
    task, stores = make_task(tmp_path, "toy_ml", multilabel=True)
    st = MelStore(stores / "train")
    ckpt = defaults.random_init(tmp_path / "m.ckpt", "audiontt", "audiontt", {}, st.mean,
                                st.std, st.stats["mels"])  # fmt: skip
    res = finetune(ckpt, task, stores, {**CFG["finetune"], **TINY}, tmp_path / "ml.json",
                   device="cpu")  # fmt: skip
    pred = np.load(tmp_path / "ml.predictions.npz")
    assert res["metric"] == "mAP" and pred["target"].sum() > 6  # several labels per clip
    assert res["test"] == pytest.approx(
        Split("t", "mAP", {"targets": pred["target"], "scores": pred["prediction"]}).score()
    )


# ------------------------------------------------------------------------- masking and Mixup


def test_spans_are_masked_as_drawn():
    x = torch.arange(20, dtype=torch.float32).reshape(1, 1, 4, 5) + 1
    got = apply_spans(x, np.array([[1]]), np.array([[2]]), dim=2)  # mel bins 1 and 2
    want = torch.tensor([[1, 2, 3, 4, 5], [0] * 5, [0] * 5, [16, 17, 18, 19, 20.0]])
    assert torch.equal(got[0, 0], want)
    got = apply_spans(
        x, np.array([[3, 0]]), np.array([[2, 1]]), dim=3, value=-1.0
    )  # frames 0, 3, 4
    want = torch.tensor([[-1, 2, 3, -1, -1], [-1, 7, 8, -1, -1], [-1, 12, 13, -1, -1],
                         [-1, 17, 18, -1, -1.0]])  # fmt: skip
    assert torch.equal(got[0, 0], want)
    got = apply_spans(x, np.array([[2]]), np.array([[0]]), dim=3)  # width 0: nothing
    assert torch.equal(got, x) and got is not x


def test_drawn_spans_stay_inside_and_cover_every_width():
    rng = np.random.default_rng(0)
    s, w = draw_spans(rng, 4000, size=10, width=4, count=2)
    assert s.shape == w.shape == (4000, 2)
    assert set(np.unique(w)) == {0, 1, 2, 3, 4} and (s >= 0).all() and (s + w <= 10).all()
    assert set(np.unique(s[w == 4])) == set(range(7))  # every start a width-4 band can have
    _, w = draw_spans(rng, 100, size=3, width=8, count=1)
    assert w.max() <= 3  # never wider than the axis


def test_spec_mask_masks_whole_bands_per_clip():
    rng = np.random.default_rng(1)
    x = torch.ones(64, 1, 16, 20)
    m = spec_mask(x, {"freq": 5, "time": 7, "n_freq": 1, "n_time": 1}, rng)
    for clip in m[:, 0]:
        zero_rows = (clip == 0).all(dim=1)  # mel bins masked across every frame
        zero_cols = (clip == 0).all(dim=0)
        assert zero_rows.sum() <= 5 and zero_cols.sum() <= 7
        assert ((clip == 0) == (zero_rows[:, None] | zero_cols[None, :])).all()  # bands only
    assert (m == 0).any() and not torch.equal(m[0], m[1])  # drawn per clip
    off = spec_mask(x, {"freq": 0, "time": 7, "n_freq": 1, "n_time": 0}, rng)
    assert torch.equal(off, x)


def test_mixup_mixes_in_the_power_domain_and_mixes_the_targets():
    mean, std = -2.0, 4.0
    raw = torch.tensor([math.log(1.0), math.log(3.0)]).reshape(2, 1, 1, 1).expand(2, 1, 2, 3)
    x = (raw - mean) / std
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    lam = torch.tensor([0.5, 0.25], dtype=torch.float64)
    xm, ym = mix(x, y, lam, torch.tensor([1, 0]), mean=mean, std=std)
    # clip 0: log(0.5 * 1 + 0.5 * 3) = log 2; clip 1: log(0.25 * 3 + 0.75 * 1) = log 1.5
    torch.testing.assert_close(xm * std + mean, torch.tensor([math.log(2.0), math.log(1.5)])
                               .reshape(2, 1, 1, 1).expand(2, 1, 2, 3))  # fmt: skip
    torch.testing.assert_close(ym, torch.tensor([[0.5, 0.5], [0.75, 0.25]]))
    xm, ym = mix(x, y, torch.tensor([1.0, 1.0]), torch.tensor([1, 0]), mean=mean, std=std)
    torch.testing.assert_close(xm, x)  # lambda 1: the clip itself
    torch.testing.assert_close(ym, y)
    same = mixup(x, y, 0.0, np.random.default_rng(0), mean=mean, std=std)
    assert same[0] is x and same[1] is y  # alpha 0: off


def test_mixup_draws_lambda_and_partners_from_its_generator():
    x = torch.randn(8, 1, 4, 6)
    y = torch.eye(8)
    a = mixup(x, y, 0.4, np.random.default_rng(5), mean=0.0, std=1.0)
    b = mixup(x, y, 0.4, np.random.default_rng(5), mean=0.0, std=1.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    lam = a[1].max(dim=1).values  # one-hot targets: the larger weight of each mixed row
    assert ((lam >= 0.5) & (lam <= 1.0)).all()
    torch.testing.assert_close(a[1].sum(1), torch.ones(8, dtype=a[1].dtype))


# --------------------------------------------------------------------------- model and errors


def test_the_scene_path_has_gradients_for_vits_too():
    class TinyViT(nn.Module):
        unit_frames = 8
        embed_dim = 2

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None] * self.w

    model = HearModel(TinyViT(), defaults.mels(), 0.0, 1.0)
    x = torch.randn(3, 1, 64, 20)  # three units, the last partial
    out = model.scene_forward(x)
    assert out.requires_grad and out.shape == (3, 2)
    torch.testing.assert_close(out.detach(), model.scene_from_logmel(x))
    out.sum().backward()
    assert model.encoder.w.grad is not None


def test_settings_have_no_defaults_of_their_own():
    """The schema is the only source of defaults."""
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(FinetuneSettings))  # fmt: skip
    s = FinetuneSettings.from_config(validate_sections({"finetune": {}})["finetune"])
    assert s.optimizer["name"] == "sgd" and 0 < s.encoder_lr_ratio < 1 and s.mixup["alpha"] == 0


def test_bad_tasks_and_settings_are_clear_errors(toy, tmp_path):
    from fakedata import hear_task

    event = hear_task(tmp_path / "ev", "toy_event", kind="event", rate=SR, seconds=1.0)
    compute_task_mels(str(event), CFG["mels"], PRE, str(tmp_path / "evs"))
    with pytest.raises(FinetuneError, match="needs a scene task; toy_event is event"):
        load_task_clips(event, tmp_path / "evs")
    task, stores = make_task(tmp_path, "toy_dp", evaluation=("d_prime",))
    with pytest.raises(FinetuneError, match=r"not the task's metric 'd_prime'"):
        load_task_clips(task, stores)
    other = defaults.random_init(tmp_path / "o.ckpt", "audiontt", "audiontt", {}, 0.0, 1.0,
                                 {**CFG["mels"], "n_mels": 48})  # fmt: skip
    with pytest.raises(FinetuneError, match="another front-end than .*o.ckpt"):
        finetune(other, toy["task"], toy["stores"], {**CFG["finetune"], **TINY},
                 tmp_path / "x.json", device="cpu")  # fmt: skip
    with pytest.raises(FinetuneError, match="finetune.optimizer .*momentum"):
        enc, ck = load_encoder(toy["ckpt"])
        hear = HearModel(enc, MelConfig.from_dict(ck["mels"]), 0.0, 1.0)
        build_finetune_optimizer(FinetuneModel(hear, 3, head_norm=False, seed=0),
                                 settings(optimizer={"name": "adamw", "lr": 1e-3,
                                                     "momentum": 0.9}))  # fmt: skip


# ------------------------------------------------------------------ the command and the workflow


def _abt(*args, timeout=600):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "abt.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_the_command_fine_tunes_with_the_configs_settings(toy, tmp_path):
    """`abt finetune` reads the `finetune` section through the schema (defaults filled, --config
    merged over config.yaml), writes the result and its predictions, and refuses to overwrite a
    file it did not write; bad inputs are one-line errors."""
    import yaml

    conf = tmp_path / "tiny.yaml"
    conf.write_text(yaml.safe_dump({"finetune": {**TINY, "tasks": [], "random_init": False}}))
    out = tmp_path / "out" / "toy.json"
    r = _abt("finetune", toy["ckpt"], toy["task"], toy["stores"], "--out", out,
             "--config", conf, "--device", "cpu")  # fmt: skip
    assert r.returncode == 0, r.stderr
    printed, res = json.loads(r.stdout), json.loads(out.read_text())
    assert res["settings"] == dataclasses.asdict(settings())  # TINY + the schema's defaults
    assert res["checkpoint"] == str(toy["ckpt"]) and res["device"] == "cpu"
    assert printed["test"] == res["test"] and printed["n_test"] == 6 == res["n_test"]
    assert res["epochs_run"] <= TINY["epochs"] and res["ci_low"] <= res["test"] <= res["ci_high"]
    with np.load(out.with_name("toy.predictions.npz")) as z:
        assert z["prediction"].shape == z["target"].shape == (6, 3)
        items = TaskItems(
            "toy_ft",
            "top1_acc",
            [
                Split(
                    "test",
                    "top1_acc",
                    {"correct": (z["prediction"].argmax(1) == z["target"].argmax(1)).astype(float)},
                )
            ],
        )
        assert items.score() == res["test"]  # fmt: skip

    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}')
    missing = tmp_path / "no-stores"
    for args, says in [
        ((toy["ckpt"], toy["task"], toy["stores"], "--out", foreign),
         f"{foreign} exists and is not a fine-tuning result written by abt"),
        ((toy["ckpt"], toy["task"], missing, "--out", tmp_path / "x.json"), str(missing)),
        ((toy["ckpt"], tmp_path / "no-task", toy["stores"], "--out", tmp_path / "x.json"),
         "task directory does not exist"),
        ((toy["ckpt"], toy["task"], toy["stores"], "--out", toy["stores"] / "train" / "r.json"),
         "lies inside the input stores"),
    ]:  # fmt: skip
        r = _abt("finetune", *args, "--config", conf, "--device", "cpu")
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert r.stderr.startswith("abt finetune: error:") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert foreign.read_text() == '{"mine": 1}'


def _cfg(**finetune):
    import copy

    cfg = copy.deepcopy(CFG)
    cfg["run"] = {**cfg["run"], "encoders": ["audiontt", "resnet18"], "seeds": [3, 1]}
    cfg["finetune"] = {**cfg["finetune"], **finetune}
    return cfg


def test_the_workflow_fine_tunes_each_main_run_and_its_random_init_on_each_task():
    """Per encoder of the report: its main run (baseline, the first seed) and, with
    finetune.random_init, its random initialisation, on every task of finetune.tasks."""
    from abt import plan

    tasks = ["embedded_envsounds", "embedded_emotion"]
    got = plan.finetune_results(_cfg(tasks=tasks, random_init=True), ["audiontt", "resnet18"])
    assert got == {
        e: {v: {t: f"results/finetune/{e}/{v}/seed3/{t}.json" for t in tasks}
            for v in ("baseline", "random_init")}
        for e in ("audiontt", "resnet18")
    }  # fmt: skip
    got = plan.finetune_results(_cfg(tasks=tasks[:1], random_init=False), ["resnet18"])
    one = "results/finetune/resnet18/baseline/seed3/embedded_envsounds.json"
    assert got == {"resnet18": {"baseline": {"embedded_envsounds": one}}}
    cfg = _cfg(tasks=[], random_init=True)
    assert plan.finetune_results(cfg, ["audiontt"]) == {} and plan.finetune_variants(cfg) == []
    # the predictions the job writes lie where the workflow declares them
    w = {"encoder": "audiontt", "variant": "baseline", "seed": 0, "task": "embedded_envsounds"}
    res = Path(plan.FINETUNE.format(**w))
    assert Path(plan.FINETUNE_PREDICTIONS.format(**w)) == res.with_name(
        f"{res.stem}.predictions.npz"
    )


def test_a_fine_tuning_job_reruns_when_a_setting_changes_not_when_the_task_list_does():
    from abt import plan

    params = plan.finetune_params(_cfg(tasks=["embedded_envsounds"]))
    assert set(params) == {f.name for f in dataclasses.fields(FinetuneSettings)}
    more = _cfg(tasks=["embedded_envsounds", "embedded_emotion"], random_init=False)
    assert repr(plan.finetune_params(more)) == repr(params)
    shuffled = _cfg()
    shuffled["finetune"] = dict(reversed(list(shuffled["finetune"].items())))
    assert repr(plan.finetune_params(shuffled)) == repr(params)
    for key, value in [("epochs", 9), ("seed", 1), ("masking", {**CFG["finetune"]["masking"],
                                                                "n_time": 2})]:  # fmt: skip
        assert plan.finetune_params(_cfg(**{key: value})) != params, key


def test_a_fine_tuning_task_the_configuration_does_not_evaluate_fails_naming_the_key():
    from abt.checks import check_config
    from abt.config import ConfigError

    with pytest.raises(ConfigError, match=r"'finetune.tasks.1': 'embedded_envsound' is not one"):
        check_config(_cfg(tasks=["embedded_emotion", "embedded_envsound"]), inputs=False)
    check_config(_cfg(tasks=[]), inputs=False)
