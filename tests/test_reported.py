"""The thesis's published numbers (abt/report/reported.yaml) are complete and self-consistent."""

from importlib.resources import files
from itertools import pairwise

import pytest
import yaml

TASKS = {
    "speech": [
        "crema_d",
        "libricount",
        "speech_commands_5h",
        "speech_commands_full",
        "vocal_imitation",
        "vox_lingua_top10",
    ],
    "environment": ["esc50", "fsd50k", "gunshot_triangulation"],
    "music": [
        "beijing_opera",
        "gtzan_genre",
        "gtzan_music_speech",
        "mridangam_stroke",
        "mridangam_tonic",
        "nsynth_pitch_5h",
        "nsynth_pitch_50h",
    ],
    "timestamp": ["maestro", "dcase2016_task2"],
}
SCENE_TASKS = [t for cat in ("speech", "environment", "music") for t in TASKS[cat]]

# Printed category averages that disagree with the mean of their own row (thesis typos). The YAML
# keeps the printed value; these are reported as-is and only excluded from the consistency check.
KNOWN_MISMATCHES = {
    # Table 4.3, ResNet-18: printed Avg 0.647, but the seven printed music scores average 0.6557.
    ("resnet18", "music"),
}


@pytest.fixture(scope="module")
def reported() -> dict:
    text = (files("abt.report") / "reported.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def test_top_level_keys(reported):
    assert set(reported) == {
        "source",
        "hear_tasks",
        "hear_l",
        "models",
        "hear_scores",
        "hear_category_avg",
        "hear_timestamp",
        "table_4_5",
        "table_4_6",
        "sweeps",
        "encoders",
    }


def test_all_18_hear_tasks_with_categories(reported):
    tasks = reported["hear_tasks"]
    assert len(tasks) == 18
    for category, keys in TASKS.items():
        for key in keys:
            assert tasks[key]["category"] == category, key
            assert tasks[key]["label"] and tasks[key]["metric"], key
    assert set(reported["hear_l"]) <= set(SCENE_TASKS)
    assert len(reported["hear_l"]) == 5


def test_every_model_scored_on_every_scene_task(reported):
    models = reported["models"]
    scores = reported["hear_scores"]
    assert set(scores) == set(models)
    assert set(reported["hear_category_avg"]) == set(models)
    assert set(reported["hear_timestamp"]) == set(models)
    for model, row in scores.items():
        assert set(row) == set(SCENE_TASKS), model
        for task, value in row.items():
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (model, task)


def test_printed_category_averages_match_rows(reported):
    mismatched = set()
    for model, row in reported["hear_scores"].items():
        for category in ("speech", "environment", "music"):
            mean = sum(row[t] for t in TASKS[category]) / len(TASKS[category])
            printed = reported["hear_category_avg"][model][category]["avg"]
            if abs(mean - printed) > 0.0015:
                mismatched.add((model, category))
    assert mismatched == KNOWN_MISMATCHES


def test_pct_rand_printed_only_for_abt_models(reported):
    for model, meta in reported["models"].items():
        cats = reported["hear_category_avg"][model]
        values = [cats[c]["pct_rand"] for c in ("speech", "environment", "music")]
        values.append(reported["hear_timestamp"][model]["pct_rand"])
        if meta["kind"] == "abt":
            assert all(isinstance(v, int | float) for v in values), model
        else:
            assert all(v is None for v in values), model


def test_timestamp_avg_is_mean_of_onset_fms(reported):
    for model, row in reported["hear_timestamp"].items():
        mean = (row["dcase_onset_fms"] + row["maestro_onset_fms"]) / 2
        assert mean == pytest.approx(row["avg"], abs=0.0006), model


def test_table_4_6_delta_rlf(reported):
    rows = reported["table_4_6"]
    assert len(rows) == 9
    rlf = next(r for r in rows if r["ablation"] == "aug_rlf")
    assert rlf["delta_rlf_pct"] is None
    for row in rows:
        if row is rlf:
            continue
        expected = row["hear_l_avg_pct"] - rlf["hear_l_avg_pct"]
        assert row["delta_rlf_pct"] == pytest.approx(expected, abs=0.05), row["augmentations"]


def test_table_4_5_pct_prev(reported):
    rows = reported["table_4_5"]
    checked = 0
    for encoder in ("audiontt", "vitc_b_16x8"):
        series = sorted((r for r in rows if r["encoder"] == encoder), key=lambda r: r["epoch"])
        assert [r["epoch"] for r in series] == [5, 20, 50, 100]
        assert series[0]["pct_prev"] is None
        for prev, cur in pairwise(series):
            if cur["pct_prev"] is None:
                continue
            rise = 100.0 * (cur["probe_100"] / prev["probe_100"] - 1.0)
            assert rise == pytest.approx(cur["pct_prev"], abs=0.15), (encoder, cur["epoch"])
            checked += 1
    assert checked == 6
