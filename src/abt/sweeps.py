"""Hyper-parameter sweeps with Optuna (thesis §4.1.1, Appendix B; Figs. 4.1-4.3).

A sweep is a named search space over a pre-training run (``sweeps:`` in the config): TPE sampler,
Hyperband pruner, ``trials`` trials of up to ``epochs`` epochs each, the linear-probe score on
``monitor.task`` reported after every epoch (so Hyperband can prune) and the final probe score as
the objective. The study lives in an Optuna journal file that several worker processes (Snakemake
jobs, SLURM jobs) share; a worker that was killed leaves its trial RUNNING, and the next worker
started in the same slot marks it failed and enqueues its parameters again, so a re-run continues
where the sweep stopped without repeating finished trials.

Parameter paths (keys of ``space``):

* ``optimizer.<key>``: a key of the run's optimiser settings (``lr``, ``lr_weights``, ...);
* ``pretrain.<path>``: a key under ``pretrain``; inside ``augment.blocks`` a block is addressed by
  its name (``pretrain.augment.blocks.mixup.alpha``) and list items by index
  (``pretrain.augment.blocks.rrc.virtual_scale.0``).

Each parameter is ``{low, high, log}`` (float) or ``{choices: [...]}`` (categorical).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import math
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

STUDY_FILE = "study.journal"
ATTR_SLOT = "abt_worker_slot"
ATTR_RUN_DIR = "abt_run_dir"


class SweepError(ValueError):
    """A sweep definition or its state on disk is unusable; the message says why."""


# ------------------------------------------------------------------------------- params


def _set_path(obj: Any, parts: list[str], value: Any, full: str) -> None:
    key, rest = parts[0], parts[1:]
    if isinstance(obj, list):
        if key.isdigit():
            idx = int(key)
        else:  # a block of augment.blocks by name
            names = [b.get("name") if isinstance(b, Mapping) else None for b in obj]
            if key not in names:
                raise SweepError(f"sweep parameter {full!r}: no list item named {key!r} ({names})")
            idx = names.index(key)
        if idx >= len(obj):
            raise SweepError(f"sweep parameter {full!r}: index {idx} out of range")
        if rest:
            _set_path(obj[idx], rest, value, full)
        else:
            obj[idx] = value
        return
    if not isinstance(obj, dict):
        raise SweepError(f"sweep parameter {full!r}: cannot descend into {type(obj).__name__}")
    if rest:
        if key not in obj:
            raise SweepError(f"sweep parameter {full!r}: no key {key!r} (keys: {sorted(obj)})")
        _set_path(obj[key], rest, value, full)
    else:
        obj[key] = value


def apply_params(run: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a resolved run config with sweep parameters (dotted paths) set."""
    out = copy.deepcopy(dict(run))
    for path, value in params.items():
        parts = path.split(".")
        if parts[0] not in ("optimizer", "pretrain"):
            raise SweepError(
                f"sweep parameter {path!r} must start with 'optimizer.' or 'pretrain.'"
            )
        if parts[0] == "optimizer" and len(parts) == 2:
            out["optimizer"][parts[1]] = value  # an optimiser may lack the key (adam: no eta)
        else:
            _set_path(out, parts, value, path)
    return out


def suggest(trial: Any, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Draw one point of ``space`` through an Optuna trial."""
    params = {}
    for name, spec in space.items():
        if "choices" in spec:
            params[name] = trial.suggest_categorical(name, list(spec["choices"]))
        else:
            params[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False))
            )
    return params


def sweep_run_config(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The resolved run a sweep starts from: encoder and optimiser of the sweep, then
    ``sweep_defaults.pretrain`` (projector output 256, the epochs) merged in."""
    from abt.config import deep_merge
    from abt.trainer import resolve_run_config

    sw = cfg["sweeps"][name]
    defaults = cfg.get("sweep_defaults") or {}
    over = deep_merge(defaults.get("pretrain") or {}, sw.get("pretrain") or {})
    over["epochs"] = int(sw.get("epochs") or defaults.get("epochs", 20))
    over["optimizer"] = sw["optimizer"]
    run = resolve_run_config(cfg, encoder=sw["encoder"], overrides=over)
    run["seed"] = int(cfg.get("run", {}).get("seed", 0))
    run["variant"] = f"sweep_{name}"
    # the trial's epoch count is the sweep's; the LR schedule decays over it
    apply_params(run, {k: _mid(v) for k, v in sw["space"].items()})  # validates every path
    return run


def _mid(spec: Mapping[str, Any]) -> Any:
    if "choices" in spec:
        return spec["choices"][0]
    lo, hi = float(spec["low"]), float(spec["high"])
    return math.sqrt(lo * hi) if spec.get("log") else (lo + hi) / 2


# ------------------------------------------------------------------------------- study


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(sweep_dir: str | Path, name: str, settings: Mapping[str, Any], seed: int) -> Any:
    """Create or load the sweep's study in its journal file (shared by all workers)."""
    optuna = _optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    d = Path(sweep_dir)
    d.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(d / STUDY_FILE)))
    pr = settings.get("pruner") or {}
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=int(pr.get("min_resource", 1)),
        max_resource=int(settings["epochs"]),
        reduction_factor=int(pr.get("reduction_factor", 3)),
    )
    sa = settings.get("sampler") or {}
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=int(sa.get("n_startup_trials", 10))
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recover_interrupted(study: Any, slot: int) -> list[int]:
    """Trials this worker slot left RUNNING (the process was killed): mark them failed and
    enqueue their parameters again. Returns the recovered trial numbers."""
    optuna = _optuna()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get(ATTR_SLOT) != slot:
            continue
        study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(dict(t.params), user_attrs={"abt_retry_of": t.number})
        recovered.append(t.number)
    return recovered


def run_worker(
    cfg: Mapping[str, Any],
    name: str,
    sweep_dir: str | Path,
    store_dir: str,
    monitor_task_dir: str,
    monitor_stores: str,
    slot: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """One worker: run trials until the study holds ``trials`` finished (complete or pruned)
    trials. Several workers (any ``slot``) may share the study."""
    optuna = _optuna()
    from abt.probe import ProbeMonitor
    from abt.trainer import Trainer

    sw = cfg["sweeps"][name]
    defaults = cfg.get("sweep_defaults") or {}
    n_trials = int(sw.get("trials") or defaults.get("trials", 16))
    settings = {
        "epochs": int(sw.get("epochs") or defaults.get("epochs", 20)),
        "pruner": defaults.get("pruner") or {},
        "sampler": defaults.get("sampler") or {},
    }
    seed = int(defaults.get("seed", 0)) + int(cfg.get("run", {}).get("seed", 0)) + 1000 * slot
    base = sweep_run_config(cfg, name)
    d = Path(sweep_dir)
    study = open_study(d, name, settings, seed)
    recovered = recover_interrupted(study, slot)
    mon_cfg = cfg["monitor"]
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    run_states = (optuna.trial.TrialState.RUNNING,)
    ran = []
    while True:
        with _locked(d / "ask.lock"):
            n = len(study.get_trials(deepcopy=False, states=done_states + run_states))
            if n >= n_trials:
                break
            trial = study.ask()
            trial.set_user_attr(ATTR_SLOT, slot)
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
        params = suggest(trial, sw["space"])
        run = apply_params(base, params)
        run["seed"] = int(base["seed"]) + trial.number
        run_dir = d / "trials" / f"{trial.number:04d}"
        trial.set_user_attr(ATTR_RUN_DIR, str(run_dir))
        monitor = ProbeMonitor(
            monitor_task_dir,
            monitor_stores,
            every_epochs=1,
            crop_frames=mon_cfg["crop_frames"],
            classifier=mon_cfg["classifier"],
            per_class=mon_cfg["per_class"],
            n_subsets=mon_cfg["subsets"],
        )
        last: dict[str, float] = {}

        def report(
            trainer: Any, epoch: int, _t: Any = trial, _m: Any = monitor, _last: dict = last
        ) -> Any:
            res = _m(trainer, epoch)
            if res:
                _last.update(res)
                _t.report(float(res["probe_100"]), epoch)
                if _t.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            return res

        try:
            Trainer(run, store_dir, str(run_dir), device=device, callbacks=[report]).fit()
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            ran.append((trial.number, "PRUNED"))
            continue
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, float(last["probe_100"]))
        ran.append((trial.number, "COMPLETE"))
    return {"slot": slot, "recovered": recovered, "ran": ran}


# ----------------------------------------------------------------------------- outputs


def summarise(
    cfg: Mapping[str, Any], name: str, sweep_dir: str | Path, out_dir: str | Path
) -> dict[str, str]:
    """``trials.csv``, ``importances.csv`` (fANOVA), ``best_params.yaml`` and the figure."""
    optuna = _optuna()
    import pandas as pd

    sw = cfg["sweeps"][name]
    defaults = cfg.get("sweep_defaults") or {}
    settings = {"epochs": int(sw.get("epochs") or defaults.get("epochs", 20))}
    study = open_study(sweep_dir, name, settings, int(defaults.get("seed", 0)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in study.get_trials(deepcopy=False):
        inter = t.intermediate_values
        rows.append(
            {
                "sweep": name,
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "last_epoch": max(inter) if inter else 0,
                "last_reported": inter[max(inter)] if inter else math.nan,
                **{f"param_{k}": v for k, v in t.params.items()},
                "retry_of": t.user_attrs.get("abt_retry_of"),
                "worker_slot": t.user_attrs.get(ATTR_SLOT),
            }
        )
    trials = pd.DataFrame(rows)
    trials.to_csv(out / "trials.csv", index=False)
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
    imp_rows = []
    if len(complete) >= 2:
        ev = optuna.importance.FanovaImportanceEvaluator(seed=int(defaults.get("seed", 0)))
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=ev)
            imp_rows = [{"param": k, "importance": float(v)} for k, v in imp.items()]
        except (RuntimeError, ValueError) as e:  # e.g. a parameter with a single value
            imp_rows = [{"param": "", "importance": math.nan, "note": str(e)}]
    pd.DataFrame(imp_rows, columns=["param", "importance"] + (
        ["note"] if imp_rows and "note" in imp_rows[0] else [])
    ).to_csv(out / "importances.csv", index=False)  # fmt: skip
    best: dict[str, Any] = {"sweep": name, "n_complete": len(complete)}
    if complete:
        b = max(complete, key=lambda t: t.value)
        best |= {"trial": b.number, "value": float(b.value), "params": dict(b.params)}
    else:
        best |= {"trial": None, "value": None, "params": {}}
    (out / "best_params.yaml").write_text(yaml.safe_dump(best, sort_keys=False))
    from abt.report.figures import plot_sweep

    plot_sweep(name, sw, trials, best, [out / "figure.png", out / "figure.pdf"])
    (out / "settings.json").write_text(json.dumps({"trials": len(rows)}, indent=1))
    return {k: str(out / f) for k, f in (("trials", "trials.csv"), ("importances",
            "importances.csv"), ("best", "best_params.yaml"))}  # fmt: skip


def best_params(path: str | Path) -> dict[str, Any]:
    """The parameters of a finished sweep's best trial (``best_params.yaml``)."""
    data = yaml.safe_load(Path(path).read_text())
    if not data.get("params"):
        raise SweepError(f"{path}: the sweep has no completed trial; nothing to feed in")
    return dict(data["params"])
