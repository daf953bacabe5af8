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

import math
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abt.config import deep_merge, load_yaml
from abt.locks import critical_section
from abt.plan import SweepFiles
from abt.runspec import RunSpec, SweepError, apply_params, resolve

__all__ = ["SweepError", "apply_params", "best_params", "run_worker", "sweep_run_config"]

STUDY_FILE = SweepFiles.JOURNAL
ATTR_SLOT = "abt_worker_slot"
ATTR_RUN_DIR = "abt_run_dir"


# ------------------------------------------------------------------------------- params


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


def sweep_settings(cfg: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The sweep's trials, epochs, sampler and pruner (its own values over ``sweep_defaults``)."""
    sw = cfg["sweeps"][name]
    defaults = cfg["sweep_defaults"]
    return {
        "trials": int(sw["trials"] or defaults["trials"]),
        "epochs": int(sw["epochs"] or defaults["epochs"]),
        "seed": int(defaults["seed"]),
        "sampler": dict(defaults["sampler"]),
        "pruner": dict(defaults["pruner"]),
        "probe_crop_frames": int(defaults["probe_crop_frames"]),
    }


def sweep_run_config(cfg: Mapping[str, Any], name: str) -> RunSpec:
    """The run a sweep starts from: encoder and optimiser of the sweep, then
    ``sweep_defaults.pretrain`` (projector output 256) and the sweep's epochs merged in."""
    sw = cfg["sweeps"][name]
    over = deep_merge(cfg["sweep_defaults"]["pretrain"], sw["pretrain"])
    over["epochs"] = sweep_settings(cfg, name)["epochs"]  # the LR schedule decays over it
    over["optimizer"] = sw["optimizer"]
    run = resolve(cfg, sw["encoder"], overrides=over, label=f"sweep_{name}")
    apply_params(run, {k: _mid(v) for k, v in sw["space"].items()})  # validates every path
    return run


def _mid(spec: Mapping[str, Any]) -> Any:
    if "choices" in spec:
        return spec["choices"][0]
    lo, hi = float(spec["low"]), float(spec["high"])
    return math.sqrt(lo * hi) if spec.get("log") else (lo + hi) / 2


# ------------------------------------------------------------------------------- study


def quiet_optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def read_study(sweep_dir: str | Path, name: str) -> Any:
    """The sweep's study, read-only (its trials; no sampler or pruner is set up)."""
    optuna = quiet_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(sweep_dir) / STUDY_FILE
    if not path.is_file():
        raise SweepError(f"{path} does not exist: run the sweep's workers first")
    storage = JournalStorage(JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage)


def open_study(sweep_dir: str | Path, name: str, settings: Mapping[str, Any], seed: int) -> Any:
    """Create or load the sweep's study in its journal file (shared by all workers)."""
    optuna = quiet_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    d = Path(sweep_dir)
    d.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(d / STUDY_FILE)))
    pr = settings["pruner"]
    pruner = optuna.pruners.HyperbandPruner(
        min_resource=int(pr["min_resource"]),
        max_resource=int(settings["epochs"]),
        reduction_factor=int(pr["reduction_factor"]),
    )
    sa = settings["sampler"]
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(sa["n_startup_trials"]))
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def recover_interrupted(study: Any, slot: int) -> list[int]:
    """Trials this worker slot left RUNNING (the process was killed): mark them failed and
    enqueue their parameters again. Returns the recovered trial numbers."""
    optuna = quiet_optuna()
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
    """:func:`run_trials` of sweep ``name`` of the configuration ``cfg``."""
    return run_trials(
        name, cfg["sweeps"][name]["space"], sweep_settings(cfg, name), sweep_run_config(cfg, name),
        cfg["monitor"], sweep_dir, store_dir, monitor_task_dir, monitor_stores, slot=slot,
        seed=int(cfg["run"]["seed"]), device=device,
    )  # fmt: skip


def run_trials(
    name: str,
    space: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
    base: RunSpec | Mapping[str, Any],
    monitor_cfg: Mapping[str, Any],
    sweep_dir: str | Path,
    store_dir: str,
    monitor_task_dir: str,
    monitor_stores: str,
    slot: int = 0,
    seed: int = 0,
    device: str = "auto",
    track: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One worker: run trials of ``base`` with parameters from ``space`` until the study holds
    ``settings["trials"]`` finished (complete or pruned) trials. Several workers (any ``slot``)
    may share the study. ``track`` (the config's ``track`` section): each trial's training and
    probe rows go to the tracker as the run ``sweeps/<name>/trials/<number>``."""
    optuna = quiet_optuna()
    from abt.probe import ProbeMonitor
    from abt.tracking import open_tracker
    from abt.trainer import Trainer

    base = RunSpec.from_dict(base)
    n_trials = int(settings["trials"])
    study_seed = int(settings["seed"]) + int(seed) + 1000 * slot
    d = Path(sweep_dir)
    study = open_study(d, name, settings, study_seed)
    recovered = recover_interrupted(study, slot)
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    run_states = (optuna.trial.TrialState.RUNNING,)
    ran = []
    while True:
        with critical_section(d / "ask.lock"):
            n = len(study.get_trials(deepcopy=False, states=done_states + run_states))
            if n >= n_trials:
                break
            trial = study.ask()
            trial.set_user_attr(ATTR_SLOT, slot)
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
        params = suggest(trial, space)
        run = apply_params(base, params).replace(seed=base.seed + trial.number)
        run_dir = d / "trials" / f"{trial.number:04d}"
        trial.set_user_attr(ATTR_RUN_DIR, str(run_dir))
        monitor = ProbeMonitor.from_config(  # every epoch, clips cropped (thesis §4.1.1)
            monitor_cfg, monitor_task_dir, monitor_stores, every_epochs=1,
            crop_frames=int(settings["probe_crop_frames"]),
        )  # fmt: skip
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
            tracker = open_tracker(track, f"sweeps/{name}/trials/{trial.number:04d}")
            Trainer(
                run, store_dir, str(run_dir), device=device, callbacks=[report], tracker=tracker
            ).fit()
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


def best_params(path: str | Path) -> dict[str, Any]:
    """The parameters of a finished sweep's best trial (``best_params.yaml``)."""
    data = load_yaml(path) or {}
    if not data.get("params"):
        raise SweepError(f"{path}: the sweep has no completed trial; nothing to feed in")
    return dict(data["params"])
