"""A sweep's outputs (thesis Figs. 4.1-4.3, Appendix B): the trials table, fANOVA parameter
importances, the best parameters and the figure, read from the sweep's Optuna study."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from abt.plan import SweepFiles
from abt.sweeps import ATTR_SLOT, quiet_optuna, read_study


def summarise(
    name: str,
    sweep: Mapping[str, Any],
    settings: Mapping[str, Any],
    sweep_dir: str | Path,
    out_dir: str | Path,
) -> dict[str, str]:
    """``trials.csv``, ``importances.csv`` (fANOVA), ``best_params.yaml`` and the figure of
    sweep ``name`` (its config entry ``sweep`` and :func:`abt.sweeps.sweep_settings`)."""
    optuna = quiet_optuna()
    import pandas as pd

    sw = sweep
    study = read_study(sweep_dir, name)
    files = SweepFiles.of_summary(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
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
    trials.to_csv(files.trials, index=False)
    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
    imp_rows: list[dict[str, Any]] = []
    note = None  # why no importances were computed
    if len(complete) < 2:
        note = "fewer than two completed trials, so none computed"
    elif len({t.value for t in complete}) == 1:
        note = (
            f"all {len(complete)} completed trials scored {complete[0].value:.4g}, so none defined"
        )
    else:
        ev = optuna.importance.FanovaImportanceEvaluator(seed=int(settings["seed"]))
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=ev)
            imp_rows = [{"param": k, "importance": float(v)} for k, v in imp.items()]
        except (RuntimeError, ValueError) as e:  # e.g. a parameter with a single value
            note = f"fANOVA failed: {e}"
    pd.DataFrame(imp_rows, columns=["param", "importance"]).to_csv(files.importances, index=False)
    best: dict[str, Any] = {"sweep": name, "n_complete": len(complete), "importances_note": note}
    if complete:
        b = max(complete, key=lambda t: t.value)
        best |= {"trial": b.number, "value": float(b.value), "params": dict(b.params)}
    else:
        best |= {"trial": None, "value": None, "params": {}}
    Path(files.best).write_text(yaml.safe_dump(best, sort_keys=False))
    from abt.report.figures import plot_sweep

    plot_sweep(name, sw, trials, best, [files.png, files.pdf])
    Path(files.settings).write_text(json.dumps({"trials": len(rows)}, indent=1))
    return {"trials": files.trials, "importances": files.importances, "best": files.best}
