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

from abt.config import ConfigError
from abt.runspec import RunSpec


def check_device(name: str | None) -> None:
    """A clear error for a ``--device`` this machine does not have (e.g. ``cuda`` on a CPU
    build of torch), before anything is built."""
    import torch

    if name in (None, "auto"):
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(
            f"--device {name!r} is not a device ({str(e).splitlines()[0]}); use auto, cpu or "
            "cuda[:N]"
        ) from None
    if dev.type != "cuda":
        return
    if not torch.cuda.is_available():
        why = (
            f"this torch build ({torch.__version__}) has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)"
        )
        raise ConfigError(f"--device {name}: {why}; use --device cpu (or auto)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )


def check_run_dir(store_dir: str | Path, run_dir: str | Path) -> None:
    """The run directory must neither be, contain nor lie inside the store it trains on."""
    store, out = Path(store_dir).resolve(), Path(run_dir).resolve()
    how = (
        "is" if out == store
        else "lies inside" if store in out.parents
        else "contains" if out in store.parents
        else None
    )  # fmt: skip
    if how:
        raise ConfigError(
            f"the run directory {run_dir} {how} the pre-training store {store_dir}: a run "
            "writes its own files and folders there; choose a run directory apart from the "
            "store (abt pretrain --out)"
        )


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
) -> dict[str, Any]:
    """One pre-training run (resumes from ``run_dir/_staging`` when it is this run's), with
    linear-probe monitoring on ``monitor_task_dir`` when ``monitor.task`` is set;
    ``sweep_params`` (a ``best_params.yaml``) overrides the configured hyper-parameters with a
    sweep's best. ``wait_for_lock``: wait for another process writing ``run_dir`` (and return
    its summary, untrained, if it finished this very run) instead of failing."""
    from abt.probe import ProbeMonitor
    from abt.runspec import apply_params
    from abt.trainer import Trainer

    check_device(device)
    check_run_dir(store_dir, run_dir)
    spec = RunSpec.from_dict(run)
    callbacks = []
    if monitor and monitor.get("task"):
        every = spec.encoder["monitor_every_epochs"]  # null: the monitor section's interval
        callbacks.append(
            ProbeMonitor.from_config(monitor, monitor_task_dir, monitor_stores, every_epochs=every)
        )
    if sweep_params:
        from abt.sweeps import best_params

        params = best_params(sweep_params)
        spec = apply_params(spec, params).replace(
            from_sweep={"file": sweep_params, "params": params}
        )
    trainer = Trainer(spec, store_dir, run_dir, device=device, callbacks=callbacks)
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
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "run.json").write_text(json.dumps(RunSpec.from_dict(run).to_dict(), indent=1))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(int(nproc)), "-m", "abt.cli", "pretrain", "--run-json", str(d / "run.json"),
           "--store", store_dir, "--out", run_dir]  # fmt: skip
    monitor = options.get("monitor")
    if monitor and monitor.get("task"):
        mon = {"monitor": dict(monitor), "task_dir": options.get("monitor_task_dir"),
               "stores_dir": options.get("monitor_stores")}  # fmt: skip
        (d / "monitor.json").write_text(json.dumps(mon, indent=1))
        cmd += ["--monitor-json", str(d / "monitor.json")]
    if options.get("sweep_params"):
        cmd += ["--sweep-params", options["sweep_params"]]
    if options.get("wait_for_lock"):
        cmd += ["--wait-for-lock"]
    if options.get("device", "auto") != "auto":
        cmd += ["--device", str(options["device"])]
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    print("[abt] " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    with open(d / "summary.json") as fh:
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
) -> dict[str, Any]:
    """One worker of sweep ``name`` (several share the study: :func:`abt.sweeps.run_trials`);
    writes what it ran to ``out_json``."""
    from abt.sweeps import run_trials

    res = run_trials(
        name, space, settings, run, monitor, sweep_dir, store_dir, monitor_task_dir,
        monitor_stores, slot=slot, seed=seed, device=device,
    )  # fmt: skip
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    return res
