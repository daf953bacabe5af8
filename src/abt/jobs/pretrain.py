"""Pre-training jobs: one run (one process, or torchrun DDP on the GPUs of a node) and sweep
workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from abt import rundir
from abt.outputs import OutputKind, check_output, mark
from abt.runspec import RunSpec

#: what a run writes in its folder (the layout of :mod:`abt.rundir`)
RUN_ENTRIES = rundir.ENTRIES
RUN_OUTPUT = OutputKind(
    "a pre-training run", legacy=lambda d: any((d / e).exists() for e in RUN_ENTRIES)
)


def check_run_dir(run_dir: str, store_dir: str, **inputs: str | None) -> None:
    """The run folder is not, does not contain and does not lie inside the store or another
    input, and holds nothing but a run's files (:func:`abt.outputs.check_output`)."""
    names = {"monitor_task_dir": "monitoring task", "monitor_stores": "monitoring stores",
             "sweep_params": "sweep parameters"}  # fmt: skip
    check_output(
        run_dir, RUN_OUTPUT, command="abt pretrain",
        inputs={"store (--store)": store_dir, **{names.get(k, k): v for k, v in inputs.items()}},
    )  # fmt: skip


def check_device(name: str | None) -> None:
    """A clear error for a ``--device`` this machine does not have (e.g. ``cuda`` on a CPU
    build of torch), before anything is built (:func:`abt.devices.pick_device`)."""
    from abt.devices import pick_device

    pick_device(name)


def pretrain(
    run: RunSpec | Mapping[str, Any],
    store_dir: str,
    run_dir: str,
    monitor: Mapping[str, Any] | None = None,
    monitor_task_dir: str | None = None,
    monitor_stores: str | None = None,
    device: str = "auto",
    sweep_params: str | None = None,
    stop_after_epochs: int | None = None,
    wait_for_lock: bool = False,
    track: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One pre-training run (resumes from ``run_dir/_staging`` when it is this run's), with
    linear-probe monitoring on ``monitor_task_dir`` when ``monitor.task`` is set;
    ``sweep_params`` (a ``best_params.yaml``) overrides the configured hyper-parameters with a
    sweep's best. ``wait_for_lock``: wait for another process writing ``run_dir`` (and return
    its summary, untrained, if it finished this very run) instead of failing. ``track`` (the
    config's ``track`` section, :mod:`abt.tracking`) mirrors the metric rows into an experiment
    tracker as the run named by ``run_dir``; it never decides a re-run."""
    check_device(device)
    check_run_dir(run_dir, store_dir, monitor_task_dir=monitor_task_dir,
                  monitor_stores=monitor_stores, sweep_params=sweep_params)  # fmt: skip
    from abt.probe import ProbeMonitor
    from abt.runspec import apply_params
    from abt.trainer import Trainer

    spec = RunSpec.from_dict(run)
    callbacks = []
    if monitor and monitor.get("task"):
        every = spec.encoder["monitor_every_epochs"]  # null: the monitor section's interval
        callbacks.append(
            ProbeMonitor.from_config(monitor, monitor_task_dir, monitor_stores, every_epochs=every)
        )
    if sweep_params:
        from abt.sweeps import best_params

        spec = apply_params(spec, best_params(sweep_params), record=sweep_params)
    rundir.RunDir(run_dir).check_usable()  # creates it, or a one-line error (read-only, a file)
    mark(run_dir, RUN_OUTPUT)  # the folder is a run's from now on
    from abt.tracking import open_tracker, run_name

    tracker = open_tracker(track, run_name(run_dir))
    trainer = Trainer(spec, store_dir, run_dir, device=device, callbacks=callbacks, tracker=tracker)
    return trainer.fit(stop_after_epochs=stop_after_epochs, wait_for_lock=wait_for_lock)


def pretrain_torchrun(
    nproc: int, run: RunSpec | Mapping[str, Any], store_dir: str, run_dir: str, **options: Any
) -> dict[str, Any]:
    """:func:`pretrain` (with its ``options``: monitoring, sweep parameters) on ``nproc`` GPUs of
    this node: ``torchrun --standalone`` DDP processes running ``abt pretrain`` on the same
    resolved run (rank 0 writes the outputs)."""
    check_device(options.get("device", "auto"))
    if nproc <= 1:
        return pretrain(run, store_dir, run_dir, **options)
    check_run_dir(
        run_dir,
        store_dir,
        **{k: options.get(k) for k in ("monitor_task_dir", "monitor_stores", "sweep_params")},
    )
    d = rundir.RunDir(run_dir)
    d.root.mkdir(parents=True, exist_ok=True)
    d.run_json.write_text(json.dumps(RunSpec.from_dict(run).to_dict(), indent=1))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(int(nproc)), "-m", "abt.cli", "pretrain", "--run-json", str(d.run_json),
           "--store", store_dir, "--out", run_dir]  # fmt: skip
    monitor = options.get("monitor")
    if monitor and monitor.get("task"):
        mon = {"monitor": dict(monitor), "task_dir": options.get("monitor_task_dir"),
               "stores_dir": options.get("monitor_stores")}  # fmt: skip
        d.monitor_json.write_text(json.dumps(mon, indent=1))
        cmd += ["--monitor-json", str(d.monitor_json)]
    if options.get("sweep_params"):
        cmd += ["--sweep-params", options["sweep_params"]]
    if (options.get("track") or {}).get("backend", "none") != "none":
        d.track_json.write_text(json.dumps(dict(options["track"]), indent=1))
        cmd += ["--track-json", str(d.track_json)]
    if options.get("wait_for_lock"):
        cmd += ["--wait-for-lock"]
    if options.get("device", "auto") != "auto":
        cmd += ["--device", str(options["device"])]
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    print("[abt] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    with open(d.summary) as fh:
        return json.load(fh)


def sweep_worker(
    name: str,
    space: Mapping[str, Any],
    settings: Mapping[str, Any],
    run: Mapping[str, Any],
    monitor: Mapping[str, Any],
    seed: int,
    sweep_dir: str,
    store_dir: str,
    monitor_task_dir: str,
    monitor_stores: str,
    slot: int,
    out_json: str,
    device: str = "auto",
    track: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One worker of sweep ``name`` (several share the study: :func:`abt.sweeps.run_trials`);
    writes what it ran to ``out_json``."""
    from abt.sweeps import run_trials

    res = run_trials(
        name, space, settings, run, monitor, sweep_dir, store_dir, monitor_task_dir,
        monitor_stores, slot=slot, seed=seed, device=device, track=track,
    )  # fmt: skip
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    return res
