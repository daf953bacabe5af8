"""Aggregation, figures and rendering of the report, against the thesis's printed numbers and
hand-computed cases (no Snakemake)."""

import copy
import html.parser
import json
import math
import shutil
import subprocess
from pathlib import Path

import defaults
import pandas as pd
import pytest
import yaml

from abt import plan
from abt.checks import check_references
from abt.config import ConfigError, load_config
from abt.jobs.data import compute_task_mels
from abt.jobs.hear import linear_eval
from abt.jobs.report import paper_tables
from abt.report import aggregate as agg
from abt.report.catalogue import reported, task_category, task_label
from abt.report.figures import plot_study, plot_training_curves
from abt.report.render import render, tex_escape
from abt.report.tables import finetune_table
from abt.report.verdicts import pretraining_verdict
from abt.runspec import resolve

ROOT = Path(__file__).resolve().parents[1]
REP = reported()


def _cfg():
    return load_config(ROOT / "config.yaml")


def _scores(rows):
    """Tidy score rows (abt.evaluation.scores format) from (encoder, variant, task, metric, value,
    primary) tuples."""
    return pd.DataFrame(
        [
            {"task": t, "encoder": e, "variant": v, "seed": 0, "grid": "fast", "split": "mean",
             "metric": m, "value": val, "primary": p}
            for e, v, t, m, val, p in rows
        ]
    )  # fmt: skip


# ------------------------------------------------------------------------------ aggregation


def test_category_averages_reproduce_thesis_tables_4_1_to_4_3():
    """Feeding the thesis's per-task scores gives its printed category averages."""
    rows = []
    for task, v in REP["hear_scores"]["audiontt"].items():
        rows.append(("audiontt", "baseline", task, "score", v, True))
    tables = agg.hear_category_tables(_scores(rows), ["audiontt"])
    for cat in ("speech", "environment", "music"):
        got = tables[cat].query("kind == 'trained'")["avg"].item()
        assert got == pytest.approx(REP["hear_category_avg"]["audiontt"][cat]["avg"], abs=1.5e-3)


def test_timestamp_average_is_the_onset_fms_only_as_in_table_4_4():
    r = REP["hear_timestamp"]["audiontt"]
    rows = [
        ("audiontt", "baseline", "dcase2016_task2", "event_onset_200ms_fms",
         r["dcase_onset_fms"], True),
        ("audiontt", "baseline", "dcase2016_task2", "segment_1s_er", r["dcase_error_rate"], False),
        ("audiontt", "baseline", "maestro", "event_onset_50ms_fms", r["maestro_onset_fms"], True),
        ("audiontt", "baseline", "maestro", "event_onset_offset_50ms_fms",
         r["maestro_onset_offset_fms"], False),
    ]  # fmt: skip
    t = agg.hear_category_tables(_scores(rows), ["audiontt"])["timestamp"]
    assert round(t["avg"].item(), 3) == r["avg"] == 0.405
    assert t["DCASE segment_1s_er"].item() == r["dcase_error_rate"]
    assert t["MAESTRO event_onset_offset_50ms_fms"].item() == r["maestro_onset_offset_fms"]


def test_pct_rand_is_the_fractional_change_from_random_init():
    rows = [
        ("enc", "baseline", "embedded_emotion", "top1_acc", 0.6, True),
        ("enc", "baseline", "embedded_keywords", "top1_acc", 0.4, True),
        ("enc", "random_init", "embedded_emotion", "top1_acc", 0.3, True),
        ("enc", "random_init", "embedded_keywords", "top1_acc", 0.5, True),
        ("enc", "baseline", "embedded_genre", "top1_acc", 0.9, True),
        ("enc", "random_init", "embedded_genre", "top1_acc", 0.9, True),
        ("enc", "baseline", "embedded_genre", "mAP", 0.1, False),  # not primary: ignored
    ]
    tabs = agg.hear_category_tables(_scores(rows), ["enc"])
    sp = tabs["speech"].set_index("kind")
    assert sp.loc["trained", "avg"] == pytest.approx(0.5)
    assert sp.loc["random_init", "avg"] == pytest.approx(0.4)
    assert sp.loc["trained", "pct_rand"] == pytest.approx(25.0)  # (0.5 - 0.4) / 0.4
    assert list(tabs["speech"].columns[:4]) == ["model", "kind", "Emotion", "Keywords"]
    mu = tabs["music"].set_index("kind")
    assert mu.loc["trained", "pct_rand"] == pytest.approx(0.0)
    assert math.isnan(agg.pct_change(1.0, 0.0))


def test_table_4_5_rises_match_the_thesis():
    curves = pd.DataFrame(
        [{"run": r["encoder"], "epoch": r["epoch"], "probe_metric": "mAP",
          "probe_100": r["probe_100"], "probe_5pc_mean": r["probe_5pc_mean"],
          "probe_5pc_std": r["probe_5pc_std"]} for r in REP["table_4_5"]]
    )  # fmt: skip
    got = agg.table_4_5(curves, epochs=[5, 20, 50, 100])
    for r in REP["table_4_5"]:
        g = got[(got["epoch"] == r["epoch"]) & (got["run"] == r["encoder"])].iloc[0]
        if r["pct_prev"] is None:
            assert math.isnan(g["pct_prev"])
        else:
            assert g["pct_prev"] == pytest.approx(r["pct_prev"], abs=0.15)


def test_study_delta_is_in_points_as_table_4_6_prints_it():
    rows = [{"ablation": r["ablation"], "hear_l_avg_pct": r["hear_l_avg_pct"]}
            for r in REP["table_4_6"]]  # fmt: skip
    df = agg.study_table(rows, delta_from="aug_rlf").set_index("ablation")
    for r in REP["table_4_6"]:
        d = df.loc[r["ablation"], "delta_pts"]
        if r["delta_rlf_pct"] is None:
            assert math.isnan(d)
        else:
            assert d == pytest.approx(r["delta_rlf_pct"], abs=0.05)
    with pytest.raises(ValueError, match="not one of the study's rows"):
        agg.study_table(rows, delta_from="nope")


def test_ablation_row_hear_l_average_and_missing_tasks():
    cfg = _cfg()
    run = resolve(cfg, "audiontt", "bs_32", 0)
    vals = [0.2, 0.4, 0.6, 0.8]
    rows = [("audiontt", "bs_32", t, "top1_acc", v, True)
            for t, v in zip(cfg["report"]["hear_l"], vals, strict=True)]  # fmt: skip
    lin = {"task": "embedded_envsounds", "probe_metric": "top1_acc", "probe_100": 0.5,
           "probe_5pc_mean": 0.3, "probe_5pc_std": 0.01}  # fmt: skip
    row = agg.ablation_row("bs_32", "d", run, _scores(rows), lin, cfg["report"]["hear_l"])
    assert row["hear_l_avg_pct"] == pytest.approx(50.0)
    assert row["batch_size"] == 32 and row["projector_out"] == 256
    assert row["epochs"] == cfg["ablation_defaults"]["pretrain"]["epochs"]
    assert row["linear_eval_100"] == 0.5 and row["linear_eval_5pc_std"] == 0.01
    with pytest.raises(ValueError, match="no HEAR score for HEAR-L"):
        agg.ablation_row("bs_32", "d", run, _scores(rows[:2]), lin, cfg["report"]["hear_l"])


@pytest.mark.parametrize(
    "ablation, field, value",
    [
        ("proj_depth_1", "projector_depth", 1),
        ("proj_depth_3", "projector_depth", 3),
        ("aug_mixup_rrc_rlf", "projector_depth", 2),
        ("proj_out_4096", "projector_out", 4096),
        ("lambda_0.05", "lambd", 0.05),
        ("crop_320", "crop_frames", 320),
        ("mask_64x2_0.2", "mask_ratio", 0.2),
        ("mask_64x2_0.2", "patch_size", "64x2"),
        ("mask_16x8_sine", "mask_mode", "sine"),
        ("aug_mixup_rrc_rlf_ppn", "augment", "mixup+rrc+rlf+ppn"),
        ("vitc_b_8x8", "optimizer", "adamw_ablation"),
    ],
)
def test_derived_fields_of_the_ablations(ablation, field, value):
    cfg = _cfg()
    run = resolve(cfg, plan.ablation_encoder(cfg, ablation), ablation, 0)
    assert agg.derived_fields(run)[field] == value


def test_minmax_scaling_best_one_worst_zero():
    df = pd.DataFrame({"x": [32, 160, 320], "a": [0.2, 0.5, 0.4], "b": [1.0, 1.0, 1.0]})
    m = agg.minmax_scaled(df, "x", ["a", "b"])
    assert m[m.series == "a"]["scaled"].tolist() == pytest.approx([0.0, 1.0, 2 / 3])
    assert m[m.series == "b"]["scaled"].tolist() == [0.5, 0.5, 0.5]  # constant: no ranking


def test_task_catalogue():
    assert task_category("fsd50k") == "environment" and task_label("libricount") == "LbC"
    assert task_category("maestro") == "timestamp"
    assert task_category("embedded_office_events") == "timestamp"
    assert (
        task_category("some_new_task") == "other" and task_label("some_new_task") == "some_new_task"
    )


# ------------------------------------------------------------------------------ config


def test_every_configured_study_and_the_paper_report_resolve():
    cfg = _cfg()
    names = set(plan.ablation_names(cfg))
    for st in cfg["studies"].values():
        assert set(st["ablations"]) <= names
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert set(paper["report"]["studies"]) == set(cfg["studies"])
    assert paper["report"]["hear_l"] == REP["hear_l"]
    assert cfg["report"]["studies"] == ["augmentations"]
    # Table 4.6's rows are the augmentations study's, in the thesis's order
    assert [r["ablation"] for r in REP["table_4_6"]] == [
        *cfg["studies"]["augmentations"]["ablations"],
        "random_init",
    ]


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["studies"]["lambda"]["ablations"].append("lambda_7"),
         "studies.lambda.ablations.7"),
        (lambda c: c["report"]["hear_l"].append("nope"), "report.hear_l.4"),
        (lambda c: (c["studies"]["input_duration"]["tasks"].append("nope"),
                    c["report"]["studies"].append("input_duration")),
         "studies.input_duration.tasks.4"),
        (lambda c: c["report"]["studies"].append("nope"), "report.studies.1"),
        (lambda c: c["studies"]["augmentations"].update(delta_from="bs_32"),
         "studies.augmentations.delta_from"),
        (lambda c: c["report"]["full_encoders"].append("nope"), "report.full_encoders.6"),
        # results/hear/references/ holds the measured references: no encoder may be named so
        (lambda c: c["encoders"].update(references=dict(c["encoders"]["audiontt"])),
         "encoders.references"),
    ],
)  # fmt: skip
def test_bad_study_references_fail_naming_the_key(edit, key):
    from abt.config import load_schema

    cfg = copy.deepcopy(_cfg())
    edit(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_references(cfg, load_schema(ROOT / "workflow/schemas/config.schema.yaml"))


def test_ablation_corpus_follows_data_ablation_pretrain():
    cfg = _cfg()
    assert plan.variant_corpus(cfg, "aug_rrc") == "train"
    cfg["data"]["ablation_pretrain"] = {
        "source": "folder", "audio_dir": "/x", "clip_list": "/y.csv",
        "clip_list_format": "abt", "id_column": "fname",
    }  # fmt: skip
    assert plan.variant_corpus(cfg, "aug_rrc") == "ablation"
    assert plan.variant_corpus(cfg, "baseline") == "train"
    assert plan.variant_corpus(cfg, "random_init") == "train"
    assert plan.corpus_data(cfg, "ablation")["id_column"] == "fname"
    with pytest.raises(ConfigError, match="data.ablation_pretrain.audio_dir"):
        plan.check_inputs_exist(cfg)


# ------------------------------------------------------------------------------ rendering


def _fake_outputs(tmp_path):
    """Minimal real-format inputs for render(): encoder table, HEAR tables, a study, figures."""
    cfg = _cfg()
    tables = tmp_path / "tables"
    tables.mkdir()
    rows = []
    for v, base in (("baseline", 0.6), ("random_init", 0.4)):
        for i, t in enumerate(["embedded_emotion", "embedded_envsounds", "embedded_office_events"]):
            rows.append(("audiontt", v, t, "m", base + 0.01 * i, True))
    scores = tmp_path / "scores.csv"
    _scores(rows).to_csv(scores, index=False)
    curves = tmp_path / "run"
    curves.mkdir()
    (curves / "epoch_metrics.csv").write_text(
        "epoch,step,probe_metric,probe_100,probe_5pc_mean,probe_5pc_std\n"
        "5,25,top1_acc,0.5,0.3,0.02\n10,50,top1_acc,0.6,0.35,0.01\n"
    )
    paper_tables(["audiontt"], [str(scores)], {"audiontt": str(curves / "epoch_metrics.csv")},
                 str(tables))  # fmt: skip
    enc = tmp_path / "encoders.csv"
    enc.write_text(
        "table,name,patch_size,params_total,params_trainable,output_dim,gflops,"
        "throughput_inputs_per_s,device,n_conv3x3,stem_channels,stem_strides,thesis_params_M,"
        "thesis_output_dim,thesis_gflops,thesis_throughput_t4,thesis_n_conv3x3,"
        "thesis_stem_channels,thesis_stem_strides\n"
        "3.1,audiontt,,6333376,6333376,3072,0.422,171.6,cpu,,,,6.33,3072,0.4,265,,,\n"
        '3.2,vitc_b,16x8,82076064,82038432,768,8.28,18.5,cpu,4,"[96, 192, 384, 768]",'
        '"[2, 2, 2, [2, 1]]",,,8.2,35,4,"[96, 192, 384, 768]","[2, 2, 2, [2, 1]]"\n'
    )
    study = cfg["studies"]["augmentations"]
    srows = []
    for i, a in enumerate([*study["ablations"], "random_init"]):
        srows.append({"ablation": a, "description": f"{a} & 50% _x_",
                      "linear_eval_task": "embedded_envsounds",
                      "linear_eval_metric": "top1_acc", "linear_eval_100": 0.3 + 0.02 * i,
                      "linear_eval_5pc_mean": 0.2, "linear_eval_5pc_std": 0.01,
                      "hear_l_avg_pct": 40 + i})  # fmt: skip
    summ = tmp_path / "aug.csv"
    df = agg.study_table(srows, delta_from=study["delta_from"])
    df["highlight"] = df["ablation"] == study["highlight"]
    df.to_csv(summ, index=False)
    figs = tmp_path / "figs"
    plot_study(
        "augmentations", study, str(summ), {}, cfg["report"]["hear_l"],
        [str(figs / "augmentations.png"), str(figs / "augmentations.pdf")],
    )  # fmt: skip
    plot_training_curves(str(tables / "training_curves.csv"),
                         [str(figs / "tc.png"), str(figs / "tc.pdf")])  # fmt: skip
    hp = tmp_path / "hparams.yaml"
    hp.write_text(yaml.safe_dump(resolve(cfg, "audiontt", "baseline", 0).to_dict()))
    return cfg, tables, enc, summ, figs, hp


class _StrictHTML(html.parser.HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (
            f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        )
        self.stack.pop()


def test_report_renders_compilable_latex_and_html(tmp_path):
    cfg, tables, enc, summ, figs, hp = _fake_outputs(tmp_path)
    # a measured CREPE against the thesis's CREPE, as paper_tables writes it at paper scale
    pd.DataFrame([
        {"reference": "crepe", "label": "CREPE (measured here)", "task": t, "metric": "top1_acc",
         "score": v, "score_lo": v - 0.02, "score_hi": v + 0.02, "reported": r, "diff": v - r,
         "beyond": abs(v - r) > 0.02}
        for t, v, r in (("crema_d", 0.39, 0.383), ("esc50", 0.35, 0.301))
    ], columns=agg.REPORTED_COLUMNS).to_csv(tables / "references_vs_reported.csv",
                                            index=False)  # fmt: skip
    out = tmp_path / "report"
    out.mkdir()
    render(
        cfg, "main", str(tables), str(enc), {"augmentations": str(summ)},
        {"training_curves": str(figs / "tc.png"), "augmentations": str(figs / "augmentations.png")},
        {"audiontt/baseline": str(hp)}, str(out / "tables.tex"), str(out / "report.html"),
    )  # fmt: skip
    tex = (out / "tables.tex").read_text()
    frags = {p.stem: p.read_text() for p in (out / "tables").glob("*.tex")}
    assert {"table_3_1", "table_3_2", "table_4_1", "table_4_2", "table_4_4", "table_4_5",
            "table_4_6", "reported_4_6", "reported_speech"} <= set(frags)  # fmt: skip
    for key in frags:
        assert rf"\input{{tables/{key}}}" in tex
    assert r"\& 50\% \_x\_" in frags["table_4_6"]  # escaped description
    assert "[Reported, not measured]" in frags["reported_4_6"]
    assert "Reported" not in frags["table_4_6"]
    assert "0.431" in frags["reported_4_6"] and "+19.2" in frags["reported_4_6"]  # thesis values
    assert r"\textbf{aug\_mixup\_rrc\_rlf}" in frags["table_4_6"]  # the highlighted default row
    assert "embedded-default" in tex and (out / "figures" / "augmentations.pdf").is_file()
    assert "scored above random initialisation on 3 of 3 tasks (point estimates, no spread)" in tex
    assert "differs beyond the spread" in frags["references_vs_reported"]
    crepe = ("CREPE (measured here) against the scores the thesis reports for it: within the "
             "spread on 1 of 2 tasks; differs beyond it on ESC-50 (measured 0.350 [0.330, 0.370], "
             "reported 0.301).")  # fmt: skip
    assert crepe.replace("[", "{[}").replace("]", "{]}") in tex  # LaTeX-escaped brackets
    if shutil.which("pdflatex"):
        r = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
            cwd=out, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:]
        assert (out / "tables.pdf").stat().st_size > 10_000
    else:  # no TeX engine: strict structural checks
        body = tex + "".join(frags.values())
        assert body.count(r"\begin{") == body.count(r"\end{")
        assert body.count("{") - body.count(r"\{") == body.count("}") - body.count(r"\}")
    page = (out / "report.html").read_text()
    p = _StrictHTML()
    p.feed(page)
    p.close()
    assert p.stack == []
    assert page.count("data:image/png;base64,") == 2
    assert "[Reported, not measured]" in page and "embedded-default" in page
    assert "torch" in page and "hparams.yaml sha256" in page
    assert "&amp; 50% _x_" in page  # HTML-escaped
    assert crepe in page


def test_the_report_states_the_grid_and_epochs_its_runs_recorded(tmp_path):
    """The scale paragraph reads what the runs recorded, not the configuration: the grids the
    scores were predicted on (all of them when they differ) and the epochs in the runs'
    hparams.yaml; a run's missing hparams.yaml is an error naming it."""
    cfg, tables, enc, summ, figs, hp = _fake_outputs(tmp_path)
    cfg = copy.deepcopy(cfg)
    cfg["hear"]["grid"], cfg["pretrain"]["epochs"] = "default", 999  # not what the runs did
    scores = pd.read_csv(tmp_path / "scores.csv")
    scores["grid_points"] = 3
    other = scores.assign(encoder="vitc_b", grid="default", grid_points=8)
    both = tmp_path / "both.csv"
    pd.concat([scores, other]).to_csv(both, index=False)
    curves = {"audiontt": str(tmp_path / "run" / "epoch_metrics.csv")}
    paper_tables(["audiontt"], [str(both)], curves, str(tables))
    assert pd.read_csv(tables / "hear_settings.csv").values.tolist() == [
        ["default", 8, 2, 3], ["fast", 3, 2, 3]]  # trained and random init, 3 tasks  # fmt: skip
    run = yaml.safe_load(hp.read_text())
    run["pretrain"]["epochs"] = 7
    hp.write_text(yaml.safe_dump(run))
    out = tmp_path / "report"
    out.mkdir()
    args = (str(enc), {"augmentations": str(summ)}, {}, {"audiontt/baseline": str(hp)},
            str(out / "tables.tex"), str(out / "report.html"))  # fmt: skip
    render(cfg, "main", str(tables), *args)
    tex = " ".join((out / "tables.tex").read_text().split())
    assert "pre-training for 7 epochs," in tex and "999" not in tex
    assert r"on the default, fast grid (8 points, 3 points)" in tex
    page = " ".join((out / "report.html").read_text().split())
    assert "pre-training for 7 epochs, HEAR evaluation" in page and "(8 points, 3 points)" in page
    (tables / "hear_settings.csv").unlink()
    with pytest.raises(FileNotFoundError, match="hear_settings.csv is missing; re-run the paper"):
        render(cfg, "main", str(tables), *args)
    paper_tables(["audiontt"], [str(tmp_path / "scores.csv")], curves, str(tables))
    render(cfg, "main", str(tables), *args)
    assert "fast grid (points not recorded)" in (out / "tables.tex").read_text()
    hp.unlink()
    with pytest.raises(FileNotFoundError, match="hparams.yaml of run 'audiontt/baseline'"):
        render(cfg, "main", str(tables), *args)


def _finetune_result(path, task, test, lo, hi, **more):
    """A fine-tuning result JSON as abt.finetune.finetune writes it (the fields the table reads,
    plus what it ignores)."""
    path.write_text(json.dumps({
        "checkpoint": "model.ckpt", "task": task, "metric": "top1_acc", "test": test,
        "ci_low": lo, "ci_high": hi, "n_test": 60, "valid": 0.5, "best_epoch": 3,
        "epochs_run": 6, "history": [], "settings": {"epochs": 8, "patience": 3,
        "encoder_lr_ratio": 0.1, "freeze_encoder": False, "batch_size": 32}, **more,
    }))  # fmt: skip
    return str(path)


def test_the_fine_tuning_table_from_two_results(tmp_path):
    """One row per encoder (trained, then random init), one column per task: the score with its
    95 % interval, labelled as measured here, beyond the thesis, EVAR's protocol."""
    cfg, tables, enc, summ, figs, hp = _fake_outputs(tmp_path)
    trained = _finetune_result(tmp_path / "t.json", "embedded_envsounds", 0.625, 0.5, 0.75)
    rand = _finetune_result(tmp_path / "r.json", "embedded_envsounds", 0.375, 0.25, 0.4999)
    ft = {"audiontt": {"baseline": {"embedded_envsounds": trained},
                       "random_init": {"embedded_envsounds": rand}}}  # fmt: skip
    scores, run = [str(tmp_path / "scores.csv")], {"audiontt": str(tmp_path / "run")}
    paper_tables(["audiontt"], scores, run, str(tables), finetune=ft)
    csv = pd.read_csv(tables / "finetune.csv")
    assert csv[["variant", "test", "ci_low", "n_test", "best_epoch"]].values.tolist() == [
        ["baseline", 0.625, 0.5, 60, 3], ["random_init", 0.375, 0.25, 60, 3]]  # fmt: skip
    [t] = finetune_table(str(tables), "embedded-default")
    assert t.key == "finetune" and t.title == "Fine-tuning (beyond the thesis)"
    assert t.columns == ["Model", "EnvSounds (top1_acc)"] and not t.reported
    assert t.rows == [["[ABT] AudioNTT", "0.625 [0.500, 0.750]"],
                      ["[ABT] AudioNTT (random init)", "0.375 [0.250, 0.500]"]]  # fmt: skip
    assert t.bold_rows == {0}
    assert "Measured here at scale 'embedded-default', not in the thesis" in t.caption
    assert "EVAR's fine-tuning protocol (at most 8 epochs" in t.caption
    assert "0.1 times the head's learning rate" in t.caption and "95 % interval" in t.caption

    out = tmp_path / "report"
    out.mkdir()
    render(cfg, "main", str(tables), str(enc), {}, {}, {}, str(out / "tables.tex"),
           str(out / "report.html"))  # fmt: skip
    frag = (out / "tables" / "finetune.tex").read_text()
    assert r"\input{tables/finetune}" in (out / "tables.tex").read_text()
    assert r"\textbf{{[}ABT{]} AudioNTT} & \textbf{0.625 {[}0.500, 0.750{]}} \\" in frag
    assert r"{[}ABT{]} AudioNTT (random init) & 0.375 {[}0.250, 0.500{]} \\" in frag
    page = (out / "report.html").read_text()
    assert "Fine-tuning (beyond the thesis)" in page and "0.375 [0.250, 0.500]" in page
    if shutil.which("pdflatex"):
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                           cwd=out, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:]

    # no fine-tuning (finetune.tasks empty: no results): no table, no file
    bare = tmp_path / "bare"
    paper_tables(["audiontt"], scores, run, str(bare), finetune={})
    assert not (bare / "finetune.csv").exists() and finetune_table(str(bare), "x") == []


def test_tex_escape():
    assert tex_escape("a_b & 5% #1 {x} ~^\\ [ABT]") == (
        r"a\_b \& 5\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{} {[}ABT{]}"
    )


def test_linear_eval_of_a_checkpoint(tmp_path):
    """The linear_eval step probes a checkpoint with its own normalisation (tiny task)."""
    from abt.data.embedded import build_embedded

    cfg = _cfg()
    emb = tmp_path / "emb"
    build_embedded(str(emb), seed=0, scale=0.05, tasks=["embedded_envsounds"], use_debian="never")
    tdir = emb / "tasks" / "embedded_envsounds-v1-full"
    stores = tmp_path / "stores"
    compute_task_mels(str(tdir), cfg["mels"], cfg["preprocess"], str(stores))
    ck = tmp_path / "r.ckpt"
    defaults.random_init(str(ck), "audiontt", "audiontt", {}, -5.0, 4.0, cfg["mels"], seed=0,
                     input_frames=96)  # fmt: skip
    mon = dict(cfg["monitor"], classifier=dict(cfg["monitor"]["classifier"], max_epochs=5))
    out = linear_eval(str(ck), str(tdir), str(stores), mon, str(tmp_path / "le.json"))
    saved = json.loads((tmp_path / "le.json").read_text())
    assert saved["task"] == "embedded_envsounds" and 0 <= saved["probe_100"] <= 1
    assert out["probe_metric"] == "top1_acc" and saved["probe_5pc_std"] >= 0


@pytest.mark.parametrize("n_importances", [2, 0, -1])
def test_report_with_a_sweep_compiles(tmp_path, n_importances):
    """A sweep's trials, importances and figure render into both formats."""
    from abt.report.figures import plot_sweep

    cfg, tables, enc, summ, figs, hp = _fake_outputs(tmp_path)
    sdir = tmp_path / "sweep"
    sdir.mkdir()
    trials = pd.DataFrame(
        {"sweep": "audiontt_lars", "number": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "COMPLETE"],
         "value": [0.4, None, 0.5], "last_epoch": [3, 1, 3], "last_reported": [0.4, 0.1, 0.5],
         "param_optimizer.lr_weights": [0.01, 0.5, 0.1],
         "param_optimizer.lr_biases": [1e-4, 1e-3, 1e-5],
         "param_optimizer.weight_decay": [1e-6, 1e-7, 1e-5]}
    )  # fmt: skip
    trials.to_csv(sdir / "trials.csv", index=False)
    imp = pd.DataFrame({"param": ["optimizer.lr_weights", "optimizer.lr_biases"],
                        "importance": [0.7, 0.3]})  # fmt: skip
    imp.iloc[: max(n_importances, 0)].to_csv(sdir / "importances.csv", index=False)
    best = {"sweep": "audiontt_lars", "trial": 2, "value": 0.5,
            "params": {"optimizer.lr_weights": 0.1},
            "importances_note": "all 2 completed trials scored 0.5, so none defined"
            if n_importances < 0 else None}  # fmt: skip
    (sdir / "best_params.yaml").write_text(yaml.safe_dump(best))
    plot_sweep("audiontt_lars", cfg["sweeps"]["audiontt_lars"], trials, best,
               [sdir / "figure.png", sdir / "figure.pdf"])  # fmt: skip
    out = tmp_path / "report"
    out.mkdir()
    render(
        cfg, "main", str(tables), str(enc), {}, {"training_curves": str(figs / "tc.png")},
        {}, str(out / "tables.tex"), str(out / "report.html"), sweeps={"audiontt_lars": str(sdir)},
    )  # fmt: skip
    frag = (out / "tables" / "sweep_audiontt_lars.tex").read_text()
    assert r"\textbf{2}" in frag and "PRUNED" in frag and "lr\\_weights" in frag
    imp = (out / "tables" / "sweep_audiontt_lars_importances.tex").read_text()
    assert ("0.700" in imp) == (n_importances == 2)
    assert ("none computed" in imp) == (n_importances == 0)  # no note: < 2 completed
    assert ("scored 0.5, so none defined" in imp) == (n_importances < 0)
    assert "Fig. 4.1a" in (out / "tables.tex").read_text()
    # the thesis's own numbers for this sweep (§4.1.1.1), labelled as reported, apart from ours
    ref = (out / "tables" / "reported_sweep_audiontt_lars.tex").read_text()
    assert "Reported, not measured" in ref and "0.282" in ref and "0.84" in ref
    assert "importance: lr\\_weights & 0.81" in ref and "5.5e-06" in ref
    assert "0.282" not in frag and "0.81" not in imp
    if shutil.which("pdflatex"):
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
                           cwd=out, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stdout[-3000:]


def test_every_sweep_the_thesis_reports_numbers_for_gets_them_as_reference_rows():
    """§4.1.1's numbers (best trials, importances) per sweep; a sweep beyond the thesis has
    none; the table says when a score is approximate in the text ("~0.28")."""
    from abt.report.tables import sweep_reported_table

    cfg = _cfg()
    rep = reported()["sweeps"]
    assert set(rep) <= set(cfg["sweeps"])
    for name, r in rep.items():
        space = set(cfg["sweeps"][name]["space"])
        assert set(r.get("best_params") or {}) <= space and set(r.get("importances") or {}) <= space
        (t,) = sweep_reported_table(name, cfg["sweeps"][name])
        assert t.reported and t.key == f"reported_sweep_{name}"
    assert sum(rep["augmentations"]["importances"].values()) == pytest.approx(1.0)
    assert sum(rep["audiontt_lars"]["importances"].values()) == pytest.approx(1.0)
    (adam,) = sweep_reported_table("audiontt_adam", cfg["sweeps"]["audiontt_adam"])
    assert adam.rows == [["best trial: score (FSD50K test mAP)", "about 0.28"]]  # as printed
    (aug,) = sweep_reported_table("augmentations", cfg["sweeps"]["augmentations"])
    assert aug.rows[0] == ["best trial: augment.blocks.mixup.alpha", "0.2"]
    assert ["importance: augment.blocks.mixup.alpha", "0.79"] in aug.rows
    assert sweep_reported_table("cvt_13", cfg["sweeps"]["cvt_13"]) == []


def test_verdict_counts_only_wins_beyond_the_spread(tmp_path):
    """Hand-made paired comparison: one task above the spread, one within, one below."""
    pd.DataFrame({
        "encoder": ["audiontt"] * 3,
        "task": ["embedded_envsounds", "embedded_genre", "embedded_spkcount"],
        "diff": [0.10, 0.05, -0.22],
        "diff_lo": [0.05, -0.02, -0.34],
        "diff_hi": [0.15, 0.12, -0.10],
        "significant": [True, False, True], "better": [True, False, False],
    }).to_csv(tmp_path / "hear_vs_random.csv", index=False)  # fmt: skip
    (line,) = pretraining_verdict(str(tmp_path), target=2)
    env, genre, spk = (task_label(t) for t in ("embedded_envsounds", "embedded_genre",
                                                "embedded_spkcount"))  # fmt: skip
    assert f"by more than the spread on 1 of 3 tasks ({env})" in line
    assert f"within the spread on {genre}" in line and f"worse on {spk}" in line
    assert line.endswith("Target: at least 2 of 3 tasks: NOT met.")
    (line,) = pretraining_verdict(str(tmp_path), target=1)
    assert line.endswith("Target: at least 1 of 3 tasks: met.")


@pytest.mark.parametrize("plot", ["bars", "line"])
def test_study_figure_draws_each_hear_l_interval_at_its_row(plot):
    """Fig. 4.5-style bars (and Fig. 4.6-style lines) carry the HEAR-L average's 95 % interval:
    one error bar per row, spanning exactly [lo, hi], on that row's HEAR-L bar or point."""
    from matplotlib.container import ErrorbarContainer

    from abt.report.figures import _study_axes

    df = pd.DataFrame({
        "ablation": ["a", "b", "random_init"], "description": ["A", "B", "R"],
        "linear_eval_task": "embedded_envsounds", "linear_eval_100": [0.7, 0.6, 0.5],
        "hear_l_avg_pct": [55.0, 50.0, 56.0], "hear_l_avg_lo": [50.0, 46.0, 52.0],
        "hear_l_avg_hi": [60.0, 54.0, 61.0], "lambd": [0.001, 0.005, 0.01],
    })  # fmt: skip
    study = {"plot": plot, "x": "lambd"}
    fig = _study_axes(df, study)
    (ax,) = fig.axes
    (eb,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segs = eb.lines[2][0].get_segments()
    assert len(segs) == 3
    for seg, lo, hi, x in zip(segs, df["hear_l_avg_lo"], df["hear_l_avg_hi"], df["lambd"],
                              strict=True):  # fmt: skip
        (x0, y0), (x1, y1) = seg
        if plot == "line":
            assert x0 == x1 == pytest.approx(x) and (y0, y1) == pytest.approx((lo / 100, hi / 100))
        else:
            assert y0 == y1 and (x0, x1) == pytest.approx((lo / 100, hi / 100))
    if plot == "bars":  # on the HEAR-L bar of each row (the second hue), not on linear eval's
        bars = ax.containers[1]
        centres = [b.get_y() + b.get_height() / 2 for b in bars]
        assert [s[0][1] for s in segs] == pytest.approx(centres)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "HEAR-L avg (95 % interval)" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_reference_gain_verdict_hand_computed(tmp_path):
    """The fraction of a reference model's gain the run recovers: (trained - own random init) /
    (reference - its random init), its interval from the paired difference's, per task; 'met'
    only when every target task reaches the fraction and none is missing."""
    from abt.report.targets import recovered_fractions, reference_gain_verdict

    df = pd.DataFrame({
        "encoder": ["audiontt"] * 3,
        "task": ["embedded_emotion", "embedded_envsounds", "embedded_pitch"],
        "trained": [0.529, 0.870, 0.70], "random_init": [0.467, 0.690, 0.59],
        "diff": [0.062, 0.180, 0.11], "diff_lo": [0.0, 0.126, 0.05],
        "diff_hi": [0.116, 0.222, 0.16],
        "significant": [False, True, True], "better": [False, True, True],
    })  # fmt: skip
    df.to_csv(tmp_path / "hear_vs_random.csv", index=False)
    tasks = {"embedded_emotion": {"reference": 0.583, "random_init": 0.467},
             "embedded_envsounds": {"reference": 0.880, "random_init": 0.670}}  # fmt: skip
    spec = {"reference": "Ref", "fraction": 0.75, "tasks": tasks}
    emo, env = recovered_fractions(df, spec)  # pitch has no reference figure: not a row
    assert emo["reference_gain"] == pytest.approx(0.116)
    assert emo["fraction"] == pytest.approx(0.062 / 0.116)  # 53 %
    assert (emo["fraction_lo"], emo["fraction_hi"]) == pytest.approx((0.0, 1.0))
    assert env["fraction"] == pytest.approx(0.18 / 0.21) and env["met"] and not emo["met"]
    (line,) = reference_gain_verdict(tmp_path, spec)
    assert line.startswith("AudioNTT: of the gain over random initialisation that Ref shows")
    assert f"{task_label('embedded_emotion')} 53% [0%, 100%] (+0.062 of +0.116)" in line
    assert f"{task_label('embedded_envsounds')} 86% [60%, 106%] (+0.180 of +0.210)" in line
    assert line.endswith("Target: at least 75% on each: NOT met.")
    spec["fraction"] = 0.5
    assert reference_gain_verdict(tmp_path, spec)[0].endswith(": met.")
    spec["tasks"]["embedded_genre"] = {"reference": 0.725, "random_init": 0.470}
    (line,) = reference_gain_verdict(tmp_path, spec)  # a target task the run did not score
    assert f"not evaluated on {task_label('embedded_genre')}" in line and line.endswith("NOT met.")
    assert reference_gain_verdict(tmp_path, None) == []
    spec["tasks"]["embedded_emotion"] = {"reference": 0.4, "random_init": 0.467}
    with pytest.raises(ValueError, match="embedded_emotion: the reference"):
        recovered_fractions(df, spec)


def _study_rows(tmp_path, names):
    """One ablation summary.csv (and its bootstrap replicates) per name."""
    import numpy as np

    csvs, boots = [], []
    for i, a in enumerate(names):
        d = tmp_path / a
        d.mkdir()
        pd.DataFrame(
            [
                {
                    "ablation": a,
                    "description": a,
                    "linear_eval_task": "t",
                    "linear_eval_metric": "m",
                    "linear_eval_100": 0.5,
                    "hear_l_avg_pct": 40.0 + 10 * i,
                }
            ]
        ).to_csv(d / "summary.csv", index=False)
        np.save(d / "hear_l_bootstrap.npy", np.full(50, 40.0 + 10 * i))  # fmt: skip
        csvs.append(str(d / "summary.csv"))
        boots.append(str(d / "hear_l_bootstrap.npy"))
    return csvs, boots


def test_the_input_duration_figure_and_table_show_its_own_tasks_and_their_average(
    tmp_path, monkeypatch
):
    """Fig. 4.9: each of the study's tasks min-max scaled over the crop lengths (best 1, worst
    0) and their average, labelled as the average of these tasks, not as HEAR-L's; the table
    names the same average and its tasks."""
    from abt.report.tables import study_tables

    cfg = _cfg()
    study = cfg["studies"]["input_duration"]
    tasks = plan.study_tasks(cfg, "input_duration")
    crops = [32, 160, 320, 480]
    scores = {t: [0.5 + 0.01 * ((i * (j + 1)) % 4) for i in range(4)] for j, t in enumerate(tasks)}
    rows = [{"ablation": f"crop_{c}", "description": f"crop {c}", "crop_frames": c,
             "linear_eval_task": "embedded_envsounds", "linear_eval_metric": "top1_acc",
             "linear_eval_100": 0.6, **{f"hear_l_{t}": scores[t][i] for t in tasks}}
            for i, c in enumerate(crops)]  # fmt: skip
    for r in rows:
        r["hear_l_avg_pct"] = 100 * sum(r[f"hear_l_{t}"] for t in tasks) / len(tasks)
    summ = tmp_path / "summary.csv"
    agg.study_table(rows, delta_from=None).to_csv(summ, index=False)
    import matplotlib.pyplot as plt

    from abt.report import figures

    made = {}
    monkeypatch.setattr(figures, "_save", lambda fig, outs: made.setdefault("fig", fig))
    plot_study("input_duration", study, str(summ), {}, tasks, [str(tmp_path / "f.png")])
    (ax,) = made["fig"].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [*(task_label(t) for t in tasks), "Task avg"]
    for line, t in zip(ax.get_lines(), [*tasks, None], strict=False):
        ys = list(line.get_ydata())
        if t is not None and len(set(scores[t])) > 1:
            assert min(ys) == 0.0 and max(ys) == 1.0
    plt.close(made["fig"])
    (table,) = study_tables("input_duration", study, str(summ))
    assert "Task avg (%)" in table.columns and "HEAR-L avg (%)" not in table.columns
    assert ", ".join(task_label(t) for t in tasks) in table.caption
    aug = study_tables("augmentations", cfg["studies"]["augmentations"], str(summ))[0]
    assert "HEAR-L avg (%)" in aug.columns


def test_a_study_orders_its_rows_with_the_bootstraps_it_is_given(tmp_path):
    """The study's summary reads the bootstrap files given to it (its rule's inputs), not files
    found next to the summaries; a missing one is an error naming it (it used to skip the
    ordering silently)."""
    from abt.jobs.report import study_summary

    csvs, boots = _study_rows(tmp_path, ["a", "b"])
    df = study_summary({"delta_from": None}, csvs, str(tmp_path / "s.csv"), bootstraps=boots)
    assert df.set_index("ablation")["p_best"].to_dict() == {"a": 0.0, "b": 1.0}
    assert df.set_index("ablation")["rank"].to_dict() == {"a": 2, "b": 1}
    Path(boots[1]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{boots[1]} is missing: the study's ordering"):
        study_summary({"delta_from": None}, csvs, str(tmp_path / "s.csv"), bootstraps=boots)
