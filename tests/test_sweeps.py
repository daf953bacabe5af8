"""Optuna sweeps: parameter paths, a shared study across two workers, resumption after a kill,
importances and figures (tiny data, real pre-training)."""

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from interrupt import hold_env, wait_held

from abt.checks import check_references
from abt.config import ConfigError, load_config, load_schema
from abt.jobs.data import compute_pretrain_mels, compute_task_mels
from abt.sweeps import SweepError, apply_params, best_params, sweep_run_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")


def _cfg():
    return load_config(ROOT / "config.yaml", SCHEMA)


def test_parameter_paths():
    cfg = _cfg()
    run = sweep_run_config(cfg, "augmentations")
    out = apply_params(
        run,
        {
            "optimizer.lr_weights": 0.1,
            "pretrain.augment.blocks.mixup.alpha": 0.6,
            "pretrain.augment.blocks.rrc.virtual_scale.1": 1.8,
        },
    )
    assert out["optimizer"]["lr_weights"] == 0.1
    blocks = {b["name"]: b for b in out["pretrain"]["augment"]["blocks"]}
    assert blocks["mixup"]["alpha"] == 0.6 and blocks["rrc"]["virtual_scale"][1] == 1.8
    assert (
        blocks["rrc"]["virtual_scale"][0]
        == run["pretrain"]["augment"]["blocks"][1]["virtual_scale"][0]
    )
    assert run["optimizer"]["lr_weights"] == 0.4  # the input is not modified
    assert out["from_sweep"] is None
    best = apply_params(run, {"optimizer.lr_weights": 0.1}, record="best_params.yaml")
    assert best["from_sweep"] == {"file": "best_params.yaml",
                                  "params": {"optimizer.lr_weights": 0.1}}  # fmt: skip
    assert best.to_dict()["from_sweep"]["params"] == {"optimizer.lr_weights": 0.1}
    with pytest.raises(SweepError, match="no list item named 'noise'"):
        apply_params(run, {"pretrain.augment.blocks.noise.alpha": 0.1})
    with pytest.raises(SweepError, match="no key 'lamda'"):
        apply_params(run, {"pretrain.objective.lamda.x": 0.1})
    with pytest.raises(SweepError, match="must start with"):
        apply_params(run, {"encoder.arch": "vit_t"})


def test_sweep_runs_follow_the_thesis_setup():
    cfg = _cfg()
    run = sweep_run_config(cfg, "audiontt_lars")
    assert run["pretrain"]["projector"]["out_dim"] == 256  # "projector output 256 in sweeps"
    assert run["pretrain"]["epochs"] == cfg["sweep_defaults"]["epochs"]
    assert run["optimizer"]["name"] == "lars"
    sp = cfg["sweeps"]["audiontt_lars"]["space"]
    assert (sp["optimizer.lr_weights"]["low"], sp["optimizer.lr_weights"]["high"]) == (1e-3, 1.0)
    assert (sp["optimizer.lr_biases"]["low"], sp["optimizer.lr_biases"]["high"]) == (1e-6, 1e-2)
    assert (sp["optimizer.weight_decay"]["low"], sp["optimizer.weight_decay"]["high"]) == (
        1e-8,
        1e-4,
    )
    for name in ("audiontt_adam", "audiontt_sgd", "vit_b", "vitc_t"):
        s = cfg["sweeps"][name]["space"]
        assert (s["optimizer.lr"]["low"], s["optimizer.lr"]["high"]) == (1e-6, 1e-2)
        assert (s["optimizer.weight_decay"]["low"], s["optimizer.weight_decay"]["high"]) == (
            1e-3,
            1.0,
        )
    assert sweep_run_config(cfg, "vitc_b")["encoder"]["kwargs"]["patch_size"] == (16, 16)
    aug = cfg["sweeps"]["augmentations"]["space"]
    assert aug["pretrain.augment.blocks.mixup.alpha"]["choices"] == [0.0, 0.2, 0.4, 0.6, 0.8]
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert paper["sweep_defaults"]["trials"] == 16 and paper["sweep_defaults"]["epochs"] == 20


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["sweeps"]["vit_t"].update(encoder="vit_q"), "sweeps.vit_t.encoder"),
        (
            lambda c: c["sweeps"]["augmentations"]["space"].update(
                {"pretrain.augment.blocks.nois.alpha": {"choices": [0.1]}}
            ),
            "sweeps.augmentations.space",
        ),
        (lambda c: c["report"]["sweeps"].append("nope"), "report.sweeps.0"),
        (lambda c: c["run"]["from_sweeps"].update(audiontt="vit_t"), "run.from_sweeps.audiontt"),
    ],
)
def test_bad_sweep_config_fails_naming_the_key(edit, key):
    cfg = copy.deepcopy(_cfg())
    edit(cfg)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_references(cfg, SCHEMA)


# ------------------------------------------------------------------------- real sweeps

WORKER = """
import json, sys
from abt.sweeps import run_worker
a = json.loads(sys.argv[1])
print(json.dumps(run_worker(a["cfg"], a["sweep"], a["dir"], a["store"], a["task"], a["stores"],
                            slot=a["slot"], device="cpu")))
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny pool store, the envsounds task stores, and a cheap sweep configuration."""
    from abt.data.embedded import build_embedded

    tmp = tmp_path_factory.mktemp("sweep")
    cfg = _cfg()
    emb = tmp / "emb"
    build_embedded(str(emb), seed=0, scale=0.05, tasks=["embedded_envsounds"], use_debian="never")
    pre = dict(cfg["preprocess"], stats=dict(cfg["preprocess"]["stats"], n_crops=300))
    compute_pretrain_mels(cfg["data"]["pretrain"], cfg["mels"], pre, str(emb), str(tmp / "s"),
                          cfg["pretrain"]["pad"])  # fmt: skip
    tdir = emb / "tasks" / "embedded_envsounds-v1-full"
    compute_task_mels(str(tdir), cfg["mels"], cfg["preprocess"], str(tmp / "t"))
    cfg["monitor"]["classifier"]["max_epochs"] = 20
    cfg["sweep_defaults"].update(trials=4, epochs=2, seed=0)
    cfg["sweep_defaults"]["sampler"]["n_startup_trials"] = 2
    cfg["sweep_defaults"]["pretrain"] = {
        "projector": {"hidden_dims": [256], "out_dim": 64},
        "batch_size": 16,
        "log_every": 1,
    }
    return {"cfg": cfg, "store": str(tmp / "s"), "task": str(tdir), "stores": str(tmp / "t")}


def _worker(tiny, sweep_dir, slot, sweep="audiontt_lars", env=None):
    arg = json.dumps({"cfg": tiny["cfg"], "sweep": sweep, "dir": str(sweep_dir),
                      "store": tiny["store"], "task": tiny["task"], "stores": tiny["stores"],
                      "slot": slot})  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, arg], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _states(sweep_dir, name="audiontt_lars"):
    from abt.sweeps import read_study

    st = read_study(sweep_dir, name)
    return [(t.number, t.state.name, dict(t.params), dict(t.user_attrs)) for t in st.trials]


@pytest.mark.slow
def test_two_workers_share_one_study_and_stop_at_the_trial_count(tiny, tmp_path):
    d = tmp_path / "sweep"
    procs = [_worker(tiny, d, slot) for slot in (0, 1)]
    outs = [p.communicate(timeout=1200) for p in procs]
    for p, (_o, e) in zip(procs, outs, strict=True):
        assert p.returncode == 0, e[-3000:]
    ran = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    assert all(r["ran"] for r in ran)  # both workers ran trials of the one study
    states = _states(d)
    assert len(states) == 4
    assert {s for _, s, _, _ in states} <= {"COMPLETE", "PRUNED"}
    assert {a["abt_worker_slot"] for *_, a in states} == {0, 1}
    # outputs: trials table, importances (fANOVA), best params, the figure
    from abt.report.sweeps import summarise
    from abt.sweeps import sweep_settings

    cfg = tiny["cfg"]
    out = summarise(
        "audiontt_lars",
        cfg["sweeps"]["audiontt_lars"],
        sweep_settings(cfg, "audiontt_lars"),
        str(d),
        str(tmp_path / "summary"),
    )
    import pandas as pd

    trials = pd.read_csv(out["trials"])
    assert len(trials) == 4 and "param_optimizer.lr_weights" in trials
    best = yaml.safe_load(Path(out["best"]).read_text())
    done = trials[trials.state == "COMPLETE"]
    assert best["value"] == pytest.approx(done["value"].max())
    assert set(best_params(out["best"])) == set(tiny["cfg"]["sweeps"]["audiontt_lars"]["space"])
    imp = pd.read_csv(out["importances"])
    if done["value"].nunique() >= 2:
        assert set(imp["param"]) == set(tiny["cfg"]["sweeps"]["audiontt_lars"]["space"])
        assert imp["importance"].sum() == pytest.approx(1.0, abs=1e-6)
    else:  # tiny data: equal scores happen; importances are then undefined, and said so
        assert imp.empty and best["importances_note"]
    assert (tmp_path / "summary" / "figure.png").stat().st_size > 5000


@pytest.mark.parametrize(
    ("values", "note"),
    [((0.4, 0.6, 0.5), None), ((0.5, 0.5), "all 2 completed trials scored 0.5"), ((0.5,), "fewer")],
)
def test_importances_or_the_reason_there_are_none(tmp_path, values, note):
    """fANOVA needs two completed trials with different scores; otherwise the summary says why
    (a CI run had two equal tiny-data scores: fANOVA raised and the table showed a 'nan' row)."""
    import optuna
    import pandas as pd
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from abt.report.sweeps import summarise
    from abt.sweeps import STUDY_FILE, sweep_settings

    cfg = _cfg()
    sw = cfg["sweeps"]["audiontt_lars"]
    d = tmp_path / "sweep"
    d.mkdir()
    storage = JournalStorage(JournalFileBackend(str(d / STUDY_FILE)))
    study = optuna.create_study(study_name="audiontt_lars", storage=storage, direction="maximize")
    for i, v in enumerate(values):
        t = study.ask()
        t.suggest_float("optimizer.lr_weights", 1e-3, 1.0, log=True)
        t.suggest_float("optimizer.weight_decay", 1e-7, 1e-4, log=True)
        t.report(v, 1)
        study.tell(t, v)
        assert t.number == i
    out = summarise("audiontt_lars", sw, sweep_settings(cfg, "audiontt_lars"), str(d),
                    str(tmp_path / "summary"))  # fmt: skip
    imp = pd.read_csv(out["importances"])
    best = yaml.safe_load(Path(out["best"]).read_text())
    if note is None:
        assert set(imp["param"]) == {"optimizer.lr_weights", "optimizer.weight_decay"}
        assert best["importances_note"] is None
    else:
        assert imp.empty and best["importances_note"].startswith(note)


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_repeating_finished_trials(tiny, tmp_path):
    d, held = tmp_path / "sweep", tmp_path / "held"
    # held right after the first checkpoint of the second trial (the test hook): one trial
    # finished and the next one runs, whatever the machine's speed
    p = _worker(tiny, d, 0, env=hold_env(held, run=2))
    wait_held(held, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = _states(d)
    finished = {n: prm for n, s, prm, _ in before if s in ("COMPLETE", "PRUNED")}
    killed = [(n, prm) for n, s, prm, _ in before if s == "RUNNING"]
    assert finished and len(killed) == 1
    p = _worker(tiny, d, 0)
    o, e = p.communicate(timeout=1200)
    assert p.returncode == 0, e[-3000:]
    res = json.loads(o.strip().splitlines()[-1])
    assert res["recovered"] == [killed[0][0]]
    after = _states(d)
    done = [(n, s, prm, a) for n, s, prm, a in after if s in ("COMPLETE", "PRUNED")]
    assert len(done) == 4  # the requested count, finished trials not repeated
    for n, prm in finished.items():  # earlier trials untouched
        assert any(m == n and p2 == prm for m, _, p2, _ in done)
    states = {n: s for n, s, _, _ in after}
    assert states[killed[0][0]] == "FAIL"
    retry = [(prm, a) for _, s, prm, a in after if a.get("abt_retry_of") == killed[0][0]]
    assert len(retry) == 1 and retry[0][0] == killed[0][1]  # same parameters, re-run


def test_sweep_targets_dry_run_with_parallel_workers(tmp_path):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["sweep_defaults"]["workers"] = 3
    cfg["run"]["from_sweeps"] = {"audiontt": "audiontt_lars"}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/pretrain/audiontt/baseline/seed0/model.ckpt",
         "--dry-run", "--forceall", "--configfile", str(p)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert out.count("rule sweep_worker:") == 3 and "rule sweep_summary:" in out
    assert "results/sweeps/audiontt_lars/summary/best_params.yaml" in out


def test_the_pretraining_job_trains_with_a_sweeps_best_parameters_and_records_them(tmp_path):
    """``sweep_params`` (a best_params.yaml) set on the resolved run once: the run trains with
    them and its hparams.yaml records them and their file (``from_sweep``)."""
    from fakedata import tone_store

    from abt.jobs.pretrain import pretrain
    from abt.runspec import resolve

    (tmp_path / "pool").mkdir()
    store = tone_store(tmp_path / "pool", 16, seed=0, seconds=(0.6, 1.2), noise=0.02,
                       stats_crops=50)  # fmt: skip
    tiny = {"epochs": 1, "batch_size": 8, "projector": {"hidden_dims": [32], "out_dim": 16}}
    run = resolve(_cfg(), overrides=tiny)
    best = tmp_path / "best_params.yaml"
    best.write_text(yaml.safe_dump({"params": {"optimizer.lr_weights": 0.123}}))
    out = tmp_path / "run"
    pretrain(run, str(store), str(out), sweep_params=str(best))
    hp = yaml.safe_load((out / "hparams.yaml").read_text())
    assert hp["optimizer"]["lr_weights"] == 0.123 != run["optimizer"]["lr_weights"]
    assert hp["from_sweep"] == {"file": str(best), "params": {"optimizer.lr_weights": 0.123}}
