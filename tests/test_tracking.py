"""Experiment trackers (abt.tracking): the no-op default, and TensorBoard and MLflow local stores
that end with every step exactly once when a run is killed and resumed (the CSV rows restored
from the checkpoint, then the new ones), with the CSV file's values."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from abt.config import validate_sections
from abt.runlog import CsvLog
from abt.tracking import RUN_TAG, Tracker, TrackingError, flatten, open_tracker, points

SRC = Path(__file__).resolve().parents[1] / "src"
RUN = "pretrain/audiontt/baseline/seed0"
N = 12


def rows(n: int = N, shift: float = 0.0) -> list[dict]:
    """Training rows as the trainer writes them (``step``, ``epoch``, floats)."""
    return [{"step": s, "epoch": (s - 1) // 4, "loss": 10.0 / s + shift, "lr": 0.01 * s / 3}
            for s in range(1, n + 1)]  # fmt: skip


def csv_values(rs: list[dict]) -> dict[str, dict[int, float]]:
    """What the CSV holds: the values as CsvLog writes them (6 significant digits)."""
    log = CsvLog("unused.csv", enabled=False)
    for r in rs:
        log.write(r)
    out: dict[str, dict[int, float]] = {}
    for r in log.rows:
        for k, v in r.items():
            if k != "step":
                out.setdefault(f"train/{k}", {})[int(r["step"])] = float(v)
    return out


def store_points(backend: str, track_dir: Path, run: str = RUN) -> dict[str, list[tuple]]:
    """Every point the local store shows for ``run``, read independently of abt.tracking
    (duplicates included): tag -> [(step, value), ...]."""
    if backend == "tensorboard":
        from tensorboard.backend.event_processing import event_accumulator as ea

        acc = ea.EventAccumulator(
            str(track_dir / "tensorboard" / run), size_guidance={ea.SCALARS: 0}
        )
        acc.Reload()
        return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=(track_dir / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("abt")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{run}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    rid = runs[0].info.run_id
    return {k: [(m.step, m.value) for m in client.get_metric_history(rid, k)]
            for k in client.get_run(rid).data.metrics}  # fmt: skip


def _need(backend: str) -> None:
    pytest.importorskip("tensorboard" if backend == "tensorboard" else "mlflow")


BACKENDS = ["tensorboard", "mlflow"]

#: attempt 1 in its own process: CSV rows 1..k through a tracker fed from step `fed` on, then
#: SIGKILL (no close, no flush beyond the tracker's own)
KILLED = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from abt.runlog import CsvLog
from abt.tracking import open_tracker
import json
backend, track_dir, run, k, fed, csv_path = sys.argv[2:8]
rows = json.loads(sys.argv[8])
tr = open_tracker({"backend": backend, "dir": track_dir}, run)
tr.log_params({"pretrain": {"epochs": 3, "optimizer": {"lr": 0.4}}, "blocks": ["mixup", "rrc"]})
log = CsvLog(csv_path)
for r in rows[: int(k)]:
    if r["step"] == int(fed):
        log.sink = tr.feed("step", "train/")
    log.write(r)
print("wrote", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "k, j, fed",
    [
        (9, 6, 1),  # killed after step 9, checkpoint at 6: steps 7..9 are in the store already
        (9, 9, 1),  # killed right after the checkpoint
        (9, 6, 4),  # the tracker saw only steps 4..9 (e.g. switched on mid-run): 1..3 filled in
        (3, 0, 1),  # killed before the first checkpoint: the resume restores no rows
    ],
)
def test_a_killed_and_resumed_run_has_every_step_once(backend, k, j, fed, tmp_path):
    _need(backend)
    import json

    rs, track = rows(), tmp_path / "track"
    p = subprocess.run(
        [sys.executable, "-c", KILLED, str(SRC), backend, str(track), RUN, str(k), str(fed),
         str(tmp_path / "killed.csv"), json.dumps(rs)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == -signal.SIGKILL and "wrote" in p.stdout, p.stderr
    before = store_points(backend, track)
    assert sorted(s for s, _ in before["train/loss"]) == list(range(fed, k + 1))

    # the resume: the checkpoint's rows 1..j restored, then j+1..N as training goes on
    ckpt = CsvLog(tmp_path / "unused.csv", enabled=False)
    for r in rs[:j]:
        ckpt.write(r)
    with open_tracker({"backend": backend, "dir": str(track)}, RUN) as tr:
        tr.log_params({"pretrain": {"epochs": 3, "optimizer": {"lr": 0.4}},
                       "blocks": ["mixup", "rrc"]})  # fmt: skip
        log = CsvLog(tmp_path / "train_metrics.csv", sink=tr.feed("step", "train/"))
        log.restore(ckpt.text())
        for r in rs[j:]:
            log.write(r)
    got = store_points(backend, track)
    want = csv_values(rs)
    assert set(got) == set(want) == {"train/epoch", "train/loss", "train/lr"}
    for tag, pts in got.items():
        assert sorted(s for s, _ in pts) == list(range(1, N + 1)), (tag, pts)  # each step once
        for s, v in pts:
            assert v == pytest.approx(want[tag][s], rel=1e-6), (tag, s)


@pytest.mark.parametrize("backend", BACKENDS)
def test_starting_over_hides_the_earlier_attempt(backend, tmp_path):
    """A run trained from scratch (its earlier attempt superseded): the store shows the new
    attempt's points only."""
    _need(backend)
    track = {"backend": backend, "dir": str(tmp_path)}
    with open_tracker(track, RUN) as tr:
        assert tr.log_metrics(rows(5), "step", "train/") == 15
    with open_tracker(track, RUN) as tr:
        assert tr.log_metrics(rows(5), "step", "train/") == 0  # all there: a resume
        tr.start_over()
        assert tr.log_metrics(rows(4, shift=100.0), "step", "train/") == 12
    got = store_points(backend, tmp_path)
    assert [s for s, _ in got["train/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in got["train/loss"]] == pytest.approx([r["loss"] for r in rows(4, 100.0)])
    if backend == "mlflow":  # the earlier MLflow run is kept, marked and re-tagged
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
        runs = client.search_runs([client.get_experiment_by_name("abt").experiment_id])
        old = [r for r in runs if r.data.tags.get(f"{RUN_TAG}.superseded") == RUN]
        assert len(runs) == 2 and len(old) == 1 and old[0].info.status == "KILLED"


@pytest.mark.parametrize("backend", BACKENDS)
def test_params_are_written_once(backend, tmp_path):
    _need(backend)
    track = {"backend": backend, "dir": str(tmp_path)}
    params = {"pretrain": {"epochs": 3, "optimizer": {"lr": 0.4}}, "blocks": ["mixup", "rrc"]}
    for _ in range(2):  # the run, then its resume
        with open_tracker(track, RUN) as tr:
            tr.log_params(params)
    if backend == "tensorboard":
        from tensorboard.backend.event_processing import event_accumulator as ea

        acc = ea.EventAccumulator(
            str(tmp_path / "tensorboard" / RUN), size_guidance={ea.TENSORS: 0}
        )
        acc.Reload()
        (event,) = acc.Tensors("params/text_summary")
        text = event.tensor_proto.string_val[0].decode()
        assert "| pretrain.optimizer.lr | 0.4 |" in text and '["mixup", "rrc"]' in text
    else:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=(tmp_path / "mlruns").resolve().as_uri())
        (run,) = client.search_runs([client.get_experiment_by_name("abt").experiment_id])
        assert run.data.params == {"pretrain.epochs": "3", "pretrain.optimizer.lr": "0.4",
                                   "blocks": '["mixup", "rrc"]'}  # fmt: skip
        with open_tracker(track, RUN) as tr, pytest.raises(TrackingError, match="another run"):
            tr.log_params({**params, "pretrain": {"epochs": 4}})


def test_the_default_tracker_does_nothing_but_checks_its_rows(tmp_path):
    cfg = validate_sections({"track": {}})
    assert cfg["track"] == {"backend": "none", "dir": "results/tracking", "uri": None}
    tr = open_tracker(cfg["track"], RUN)
    assert type(tr) is Tracker and tr.log_metrics(rows(3), "step") == 0
    tr.log_params({"a": 1})
    tr.start_over()
    tr.close()
    with pytest.raises(TrackingError, match="row 1 has no integer 'step'"):
        tr.log_metrics([{"step": 1, "loss": 1.0}, {"loss": 2.0}], "step")
    assert open_tracker(None, RUN).backend == "none"
    assert list(tmp_path.iterdir()) == []


def test_points_and_flatten():
    assert points([{"step": "3", "loss": "0.5", "lr": 0.1, "note": "x", "empty": ""}], "step",
                  "train/") == [("train/loss", 3, 0.5), ("train/lr", 3, 0.1)]  # fmt: skip
    with pytest.raises(TrackingError, match="no integer 'step'"):
        points([{"step": "2.5", "loss": 1.0}], "step")
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": "1", "a.c": "[1, 2]",
                                                               "d": "None"}  # fmt: skip


def test_bad_settings_and_missing_packages_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(TrackingError, match=r"track.backend 'wandb' is unknown; known: \['mlflow'"):
        open_tracker({"backend": "wandb", "dir": str(tmp_path)}, RUN)
    with pytest.raises(TrackingError, match="set track.dir"):
        open_tracker({"backend": "tensorboard", "dir": ""}, RUN)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    for backend in BACKENDS:
        with pytest.raises(TrackingError, match=rf"needs {backend}.*pip install 'abt\[track\]'"):
            open_tracker({"backend": backend, "dir": str(tmp_path)}, RUN)


def test_schema_offers_the_registered_backends():
    from abt.config import load_schema
    from abt.tracking import TRACKERS

    enum = load_schema()["properties"]["track"]["properties"]["backend"]["enum"]
    assert sorted(enum) == TRACKERS.names()


def test_a_tracker_run_in_a_subprocess_env_is_isolated(tmp_path):
    """MLflow's client only: no MLFLOW_TRACKING_URI or ./mlruns of the working directory used."""
    pytest.importorskip("mlflow")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        from abt.tracking import open_tracker
        with open_tracker({{"backend": "mlflow", "dir": {str(tmp_path / "t")!r}}}, "r") as tr:
            tr.log_metrics([{{"step": 1, "loss": 1.0}}], "step")
    """)
    env = {**os.environ, "MLFLOW_TRACKING_URI": (tmp_path / "elsewhere").as_uri()}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "mlruns").is_dir()
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "mlruns").exists()


def test_a_csv_log_feeds_its_sink_the_stored_rows(tmp_path):
    """Rows as the CSV holds them (floats to 6 digits), the whole history on a restore; a
    disabled log (DDP ranks > 0) feeds nothing."""
    got = []
    log = CsvLog(tmp_path / "m.csv", sink=got.append)
    log.write({"step": 1, "loss": 1 / 3})
    log.restore("step,loss\n1,0.5\n2,0.25\n")
    log.restore("")
    assert got == [[{"step": 1, "loss": "0.333333"}],
                   [{"step": "1", "loss": "0.5"}, {"step": "2", "loss": "0.25"}]]  # fmt: skip
    quiet = CsvLog(tmp_path / "q.csv", enabled=False, sink=got.append)
    quiet.write({"step": 1, "loss": 1.0})
    assert len(got) == 2
