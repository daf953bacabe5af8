"""A measured reference that the thesis also prints (CREPE, Tables 4.1-4.4) set against its
published scores: hand-computed predictions, the table, the report's sentence and the planning
that connects a configured reference with its published row (no Snakemake, no kit)."""

import json
import pickle

import pandas as pd
import pytest
import torch

from abt import plan
from abt.config import REPO_ROOT, load_config
from abt.evaluation.references import REFERENCES, Reference, reported_as
from abt.jobs.report import paper_tables
from abt.report.aggregate import reference_vs_reported
from abt.report.catalogue import TablesFiles, reported_primary, task_label
from abt.report.tables import vs_reported_table
from abt.report.verdicts import reported_reference_verdict


def _predictions(d, n_correct, n, classes=4):
    """A kit predictions folder of one test split: ``n_correct`` of ``n`` items right."""
    d.mkdir(parents=True)
    (d / "task_metadata.json").write_text(json.dumps({"evaluation": ["top1_acc"]}))
    target = torch.arange(n) % classes
    predicted = torch.where(torch.arange(n) < n_correct, target, (target + 1) % classes)
    one = torch.nn.functional.one_hot
    with open(d / "test.predictions.pkl", "wb") as fh:
        pickle.dump({"target": one(target, classes).float(),
                     "prediction": one(predicted, classes).float()}, fh)  # fmt: skip
    return d


def test_the_published_primary_scores_of_a_model():
    crepe = reported_primary("crepe")
    assert len(crepe) == 18  # Tables 4.1-4.3's 16 scene tasks and Table 4.4's two
    assert crepe["crema_d"] == 0.383 and crepe["nsynth_pitch_50h"] == 0.900
    assert crepe["dcase2016_task2"] == 0.552 and crepe["maestro"] == 0.3910  # onset FMS
    assert reported_primary("naive") == {}  # the thesis does not print the naive baseline


def test_only_the_shipped_crepe_is_the_thesiss_crepe():
    assert reported_as(REFERENCES.get("crepe")) == "crepe"
    assert reported_as(REFERENCES.get("naive")) is None
    mine = Reference("crepe", "my_pkg.hear", sample_rate=16000)  # a user's module named crepe
    assert reported_as(mine) is None


def test_measured_against_published_hand_computed(tmp_path):
    """crema_d: 38 of 100 right (0.380; the published 0.383 lies inside its interval);
    esc50: every item right (interval [1, 1]; the published 0.301 lies outside it); a task
    the thesis does not print is not a row."""
    preds = {"crema_d": _predictions(tmp_path / "crema_d", 38, 100),
             "esc50": _predictions(tmp_path / "esc50", 40, 40),
             "embedded_pitch": _predictions(tmp_path / "embedded_pitch", 3, 4)}  # fmt: skip
    df = reference_vs_reported(preds, reported_primary("crepe"), "crepe", "CREPE (measured here)")
    assert list(df["task"]) == ["crema_d", "esc50"]
    crema, esc = df.iloc[0], df.iloc[1]
    assert crema["score"] == pytest.approx(0.38) and crema["reported"] == 0.383
    assert crema["score_lo"] < 0.383 < crema["score_hi"] and not crema["beyond"]
    assert crema["diff"] == pytest.approx(0.38 - 0.383)
    assert (esc["score"], esc["score_lo"], esc["score_hi"]) == (1.0, 1.0, 1.0) and esc["beyond"]

    tables = TablesFiles(tmp_path / "tables")
    (tmp_path / "tables").mkdir()
    df.to_csv(tables.vs_reported, index=False)
    (line,) = reported_reference_verdict(tables.root)
    assert line == (
        "CREPE (measured here) against the scores the thesis reports for it: within the spread "
        f"on 1 of 2 tasks; differs beyond it on {task_label('esc50')} (measured 1.000 "
        "[1.000, 1.000], reported 0.301)."
    )
    (table,) = vs_reported_table(tables.root)
    assert [r[-1] for r in table.rows] == ["within the spread", "differs beyond the spread"]
    assert table.rows[1][3:6] == ["1.000 [1.000, 1.000]", "0.301", "+0.699"]


def test_the_paper_tables_compare_only_a_printed_reference(tmp_path):
    """paper_tables writes references_vs_reported.csv for a reference the thesis prints and
    for no other; without one there is no file, no table and no sentence."""
    root = tmp_path / "refs"
    for name in ("crepe", "naive"):
        _predictions(root / name / "esc50", 40, 40)
    rows = [{"task": "esc50", "encoder": name, "variant": "reference", "seed": 0, "grid": "fast",
             "split": "mean", "metric": "top1_acc", "value": 1.0, "primary": True}
            for name in ("crepe", "naive")]  # fmt: skip
    scores = tmp_path / "scores.csv"
    pd.DataFrame(rows).to_csv(scores, index=False)
    refs = {"crepe": {"label": "CREPE (measured here)", "predictions": str(root / "crepe"),
                      "reported": "crepe"},
            "naive": {"label": "HEAR naive baseline (measured here)",
                      "predictions": str(root / "naive"), "reported": None}}  # fmt: skip
    out = tmp_path / "tables"
    written = paper_tables([], [str(scores)], {}, str(out), references=refs)
    got = pd.read_csv(written["references_vs_reported"])
    assert list(got["reference"]) == ["crepe"] and bool(got["beyond"].iloc[0])
    refs.pop("crepe")
    out2 = tmp_path / "tables2"
    assert "references_vs_reported" not in paper_tables([], [str(scores)], {}, str(out2),
                                                        references=refs)  # fmt: skip
    assert vs_reported_table(str(out2)) == [] and reported_reference_verdict(str(out2)) == []


def test_the_report_scope_says_which_reference_the_thesis_prints():
    cfg = load_config(REPO_ROOT / "config.yaml")
    cfg["hear"]["references"] = ["naive", "crepe"]
    refs = plan.ReportScope(cfg, "main").references()
    assert refs["crepe"]["reported"] == "crepe" and refs["naive"]["reported"] is None
    assert refs["crepe"]["predictions"] == plan.reference_files("crepe").predictions


def test_a_run_against_its_random_init_and_a_reference_hand_computed(tmp_path):
    """The paired tables' rows: every item right against half right on one task (difference
    0.5, beyond the spread), nothing on a task only one side scored."""
    from abt.report.aggregate import hear_vs_random, hear_vs_reference

    trained = {"esc50": _predictions(tmp_path / "t" / "esc50", 40, 40),
               "crema_d": _predictions(tmp_path / "t" / "crema_d", 10, 20)}  # fmt: skip
    other = {"esc50": _predictions(tmp_path / "o" / "esc50", 20, 40)}
    vr = hear_vs_random(trained, other, "audiontt")
    assert list(vr.columns) == [
        "encoder", "task", "metric", "trained", "trained_lo", "trained_hi", "random_init",
        "random_lo", "random_hi", "diff", "diff_lo", "diff_hi", "significant", "better",
    ]  # fmt: skip
    (row,) = vr.to_dict("records")
    assert (row["encoder"], row["task"], row["trained"], row["random_init"]) == (
        "audiontt", "esc50", 1.0, 0.5)  # fmt: skip
    assert row["diff"] == 0.5 and row["diff_lo"] > 0 and row["significant"] and row["better"]
    vs = hear_vs_reference(trained, other, "audiontt", "naive", "HEAR naive baseline")
    assert list(vs.columns[:6]) == ["encoder", "reference", "label", "task", "metric", "trained"]
    (ref,) = vs.to_dict("records")
    assert (ref["score"], ref["score_lo"], ref["score_hi"]) == (
        row["random_init"], row["random_lo"], row["random_hi"])  # the same draws  # fmt: skip
