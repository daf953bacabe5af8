"""Linear-probe monitoring: the classifier, the 5-per-class subsets, clip embeddings."""

import defaults
import numpy as np
import pytest
import torch

from abt.hear import HearModel
from abt.probe import (
    ProbeConfig,
    TaskData,
    _split_roles,
    embed_logmel,
    fit_linear_probe,
    low_shot_subsets,
    probe_scores,
)


def separable(n_per=500, n_classes=4, dim=16, noise=0.3, seed=0):
    """Well-separated Gaussian classes; n_per large enough that the thesis protocol (batch 200,
    lr 1e-3, <= 100 epochs) takes enough steps, as it does on FSD50K (~36k training clips)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))

    def make(n):
        y = np.repeat(np.arange(n_classes), n)
        x = centres[y] + noise * rng.standard_normal((len(y), dim))
        return x.astype(np.float32), y

    xs, ys = zip(*(make(n) for n in (n_per, n_per // 2, n_per // 2)), strict=True)
    return TaskData(
        dict(zip(("train", "valid", "test"), xs, strict=True)),
        dict(zip(("train", "valid", "test"), ys, strict=True)),
        n_classes,
        False,
        "top1_acc",
    )


def test_separable_embeddings_are_learned_near_perfectly():
    res = fit_linear_probe(separable(), ProbeConfig(**defaults.classifier()))
    assert res["test"] >= 0.99 and res["epochs"] <= 100


def test_random_labels_stay_near_chance():
    d = separable()
    rng = np.random.default_rng(1)
    for k in d.y:
        d.y[k] = rng.integers(0, 4, len(d.y[k]))
    assert fit_linear_probe(d, ProbeConfig(**defaults.classifier()))["test"] < 0.5


def test_early_stopping_and_thesis_hyperparameters():
    cfg = ProbeConfig(**defaults.classifier())
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.max_epochs, cfg.patience) == (
        1e-3,
        1e-8,
        200,
        100,
        10,
    )
    d = separable(noise=0.0)
    # validation labels unrelated to the inputs: the validation score stops improving at once
    d.y["valid"] = np.random.default_rng(3).integers(0, 4, len(d.y["valid"]))
    res = fit_linear_probe(d, ProbeConfig(**defaults.classifier(patience=2)))
    assert res["epochs"] < 100  # stops once the validation score stops improving


def test_low_shot_subsets_have_exactly_five_per_class():
    y = np.repeat(np.arange(6), 20)
    subs = low_shot_subsets(y, 5, 3, seed=0)
    assert len(subs) == 3
    for s in subs:
        assert np.bincount(y[s], minlength=6).tolist() == [5] * 6
    assert not all(np.array_equal(subs[0], s) for s in subs[1:])  # random, not identical
    y_small = np.array([0] * 3 + [1] * 10)
    assert np.bincount(y_small[low_shot_subsets(y_small, 5, 1, 0)[0]]).tolist() == [3, 5]


def test_multilabel_subsets_and_scores():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.3).astype(np.float32)
    y[np.arange(60), np.arange(60) % 4] = 1
    for s in low_shot_subsets(y, 5, 2, 0):
        assert (y[s].sum(0) >= 5).all()


def test_probe_scores_report_mean_and_std():
    out = probe_scores(separable(), ProbeConfig(**defaults.classifier()), **defaults.low_shot())
    assert out["probe_100"] >= 0.99 and 0.0 <= out["probe_5pc_std"] <= 0.5
    assert set(out) == {"probe_metric", "probe_100", "probe_5pc_mean", "probe_5pc_std"}


def test_low_shot_spread_is_the_population_std_of_the_subsets(monkeypatch):
    """Table 4.5's "± std" over the three 5pC subsets is the authors' np.std (ddof 0)."""
    from abt import probe

    scores = iter([0.9, 0.2, 0.4, 0.9])  # the 100 % probe, then the three subsets

    monkeypatch.setattr(probe, "fit_linear_probe", lambda *a, **k: {"test": next(scores)})
    out = probe_scores(separable(), ProbeConfig(**defaults.classifier()), per_class=5, n_subsets=3)
    assert out["probe_5pc_mean"] == pytest.approx(0.5)
    assert out["probe_5pc_std"] == pytest.approx(np.sqrt(((0.3**2) + (0.1**2) + (0.4**2)) / 3))


def test_split_roles_for_kfold_and_trainvaltest():
    assert _split_roles(["train", "valid", "test"]) == {
        "train": ["train"],
        "valid": ["valid"],
        "test": ["test"],
    }
    r = _split_roles([f"fold{i:02d}" for i in range(5)])
    assert r == {"test": ["fold00"], "valid": ["fold01"], "train": ["fold02", "fold03", "fold04"]}
    with pytest.raises(ValueError):
        _split_roles(["fold00", "fold01"])


class UnitCounter(torch.nn.Module):
    """A fake ViT: records its input and returns the mean of each unit."""

    unit_frames = 96
    embed_dim = 1

    def forward(self, x):
        self.last = x
        return x.mean(dim=(1, 2, 3))[:, None]


def test_vit_units_average_without_an_all_zero_unit():
    enc = UnitCounter()
    model = HearModel(enc, defaults.mels(), 0.0, 1.0)
    out = embed_logmel(model, np.ones((192, 64), np.float32))  # exactly two units
    assert enc.last.shape == (2, 1, 64, 96) and out[0] == pytest.approx(1.0)
    embed_logmel(model, np.ones((100, 64), np.float32))
    assert enc.last.shape[0] == 2  # a partial second unit, padded


def test_conv_encoder_sees_the_whole_normalised_clip():
    class Conv(torch.nn.Module):
        unit_frames = None
        embed_dim = 1

        def forward(self, x):
            self.last = x
            return x.mean(dim=(1, 2, 3))[:, None]

    enc = Conv()
    model = HearModel(enc, defaults.mels(), 1.0, 2.0)
    lm = np.full((300, 64), 3.0, np.float32)
    out = embed_logmel(model, lm)
    assert enc.last.shape == (1, 1, 64, 300) and out[0] == pytest.approx(1.0)
    embed_logmel(model, lm, crop_frames=96)
    assert enc.last.shape[-1] == 96


def test_a_probe_leaves_the_global_generators_alone(monkeypatch):
    """A probe during pre-training reseeded torch's global CPU and CUDA generators (the run's
    dropout and masking streams then repeated each monitoring interval). The classifier is now
    initialised from a generator of its own -- to the same weights as before."""
    import math

    from torch import nn

    from abt.probe import _linear

    torch.manual_seed(3)
    ref = nn.Linear(16, 4)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    seeded = []
    monkeypatch.setattr(torch, "manual_seed", lambda s: seeded.append(s))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: seeded.append(s))
    mine = _linear(16, 4, 3)
    assert torch.equal(mine.weight, ref.weight) and torch.equal(mine.bias, ref.bias)
    res = probe_scores(
        separable(n_per=60), ProbeConfig(**defaults.classifier(max_epochs=3)), **defaults.low_shot()
    )
    assert math.isfinite(res["probe_100"]) and seeded == []
    assert torch.equal(torch.get_rng_state(), before)
