"""Spreads of HEAR scores from the kit's test predictions (abt.report.stats): the kit's metrics
recomputed exactly, paired bootstrap intervals, the study ordering."""

import json
import pickle

import numpy as np
import pytest
import torch

from abt.report import stats
from abt.report.aggregate import study_ordering


def write_task(d, metric, splits):
    """A predictions folder as the kit leaves it: task_metadata.json + <split>.predictions.pkl."""
    d.mkdir(parents=True)
    (d / "task_metadata.json").write_text(json.dumps({"evaluation": [metric]}))
    for name, pred in splits.items():
        with open(d / f"{name}.predictions.pkl", "wb") as fh:
            pickle.dump(pred, fh)
    return d


def onehot(labels, n):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), n).float()


def scene(labels, predicted, n=4):
    return {"target": onehot(labels, n), "prediction": onehot(predicted, n) * 0.9 + 0.025,
            "prediction_logit": torch.zeros(len(labels), n)}  # fmt: skip


def test_accuracy_is_the_kits_top1_and_k_folds_are_averaged(tmp_path):
    d = write_task(tmp_path / "t", "top1_acc", {
        "fold00": scene([0, 1, 2, 3], [0, 1, 2, 0]),  # 3/4
        "fold01": scene([0, 1, 2, 3, 0, 1], [0, 0, 0, 0, 0, 0]),  # 2/6
    })  # fmt: skip
    items = stats.load_task_items(d)
    assert items.metric == "top1_acc" and [s.n for s in items.splits] == [4, 6]
    assert items.score() == pytest.approx((0.75 + 2 / 6) / 2)  # the kit's aggregate: fold mean
    reps = items.replicates(200)
    assert reps.shape == (200,) and 0 <= reps.min() <= items.score() <= reps.max() <= 1


def test_map_is_the_kits_macro_average_precision(tmp_path):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    y = (rng.random((30, 5)) < 0.3).astype(np.float32)
    y[0] = 1  # every class has a positive
    p = rng.random((30, 5)).astype(np.float32)
    d = write_task(tmp_path / "t", "mAP", {"test": {"target": torch.from_numpy(y),
                                                   "prediction": torch.from_numpy(p)}})  # fmt: skip
    assert stats.load_task_items(d).score() == pytest.approx(
        average_precision_score(y, p, average="macro")
    )


def ev(label, start_ms):
    return {"label": label, "start": start_ms, "end": start_ms + 100.0}


def test_event_f_measure_matches_onsets_within_200ms(tmp_path):
    """Hand-computed: onsets within 200 ms of a reference of the same label match one to one
    (a maximum matching); F = 2 TP / (references + estimates)."""
    target = {"a.wav": [ev("dog", 100), ev("dog", 1000), ev("cat", 500)],
              "b.wav": [ev("dog", 0), ev("dog", 300)]}  # fmt: skip
    predicted = {
        "a.wav": [ev("dog", 250), ev("dog", 1500), ev("dog", 510)],  # 1 TP (cat != dog)
        "b.wav": [ev("dog", 150)],
    }  # 150 ms is within 200 ms of 0 and of 300: 1 TP
    d = write_task(tmp_path / "t", "event_onset_200ms_fms", {"test": {
        "target_events": target, "predicted_events": predicted}})  # fmt: skip
    items = stats.load_task_items(d)
    counts = items.splits[0].arrays["counts"]
    assert counts.tolist() == [[1, 3, 3], [1, 2, 1]]  # per file: TP, references, estimates
    assert items.score() == pytest.approx(2 * 2 / (5 + 4))


def test_paired_comparison(tmp_path):
    labels = list(np.arange(200) % 4)
    good = write_task(tmp_path / "good", "top1_acc", {"test": scene(labels, labels)})
    noisy = [lab if i % 3 else (lab + 1) % 4 for i, lab in enumerate(labels)]
    bad = write_task(tmp_path / "bad", "top1_acc", {"test": scene(labels, noisy)})
    a, b = stats.load_task_items(good, "t"), stats.load_task_items(bad, "t")
    c = stats.compare(a, b, n_boot=300)
    assert c["diff"] == pytest.approx(1 - 133 / 200) and c["significant"] and c["diff_lo"] > 0
    same = stats.compare(a, stats.load_task_items(good, "t"), n_boot=300)
    assert (same["diff_lo"], same["diff_hi"], same["significant"]) == (0.0, 0.0, False)
    other = write_task(tmp_path / "other", "top1_acc", {"test": scene(labels[:50], labels[:50])})
    with pytest.raises(stats.StatsError, match="same test items"):
        stats.compare(a, stats.load_task_items(other, "t"))


def test_a_missing_or_unknown_prediction_is_a_clear_error(tmp_path):
    d = write_task(tmp_path / "t", "top1_acc", {})
    with pytest.raises(stats.StatsError, match=r"no \*\.predictions\.pkl"):
        stats.load_task_items(d)
    d2 = write_task(tmp_path / "u", "d_prime", {"test": scene([0, 1], [0, 1])})
    with pytest.raises(stats.StatsError, match="no resampling score for metric 'd_prime'"):
        stats.load_task_items(d2)


def test_study_ordering_with_its_uncertainty():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, 2000)
    reps = {"a": 60 + base, "b": 59.9 + base + rng.normal(0, 0.5, 2000), "c": 50 + base}
    df = study_ordering(list(reps), reps).set_index("ablation")
    assert df.loc["a", "rank"] == 1 and df.loc["c", "rank"] == 3
    assert df.loc["b", "ties_best"] and not df.loc["c", "ties_best"]  # b within the spread of a
    assert df["p_best"].sum() == pytest.approx(1.0) and df.loc["c", "p_best"] == 0
