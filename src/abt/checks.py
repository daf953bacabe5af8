"""Checks of a whole configuration: the schema, then the cross-references between its sections
(encoders, optimisers, tasks, ablations, studies, sweeps) and the data on disk. The workflow
runs them at parse time and ``abt check-config`` runs the same."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from abt.config import ConfigError, load_schema, validate_config
from abt.plan import check_inputs_exist, check_row_tasks, study_tasks, task_dirs, variants
from abt.report.fields import DERIVED_FIELDS
from abt.runspec import resolve
from abt.sweeps import SweepError, sweep_run_config


def _did_you_mean(name: str, known: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def check_config(
    cfg: dict[str, Any], schema: Mapping[str, Any] | None = None, *, inputs: bool = True
) -> dict[str, Any]:
    """Validate ``cfg`` in place (defaults filled), check its cross-references and (with
    ``inputs``) that the data it points at exists; raise :class:`ConfigError` naming the key."""
    schema = schema or load_schema()
    validate_config(cfg, schema)
    check_references(cfg, schema)
    if inputs:
        check_inputs_exist(cfg)
    return cfg


def check_references(cfg: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Cross-references resolve, and every variant (the base and each ablation merged onto it)
    resolves to a valid run."""
    if cfg["pretrain"]["encoder"] not in cfg["encoders"]:
        raise ConfigError(
            f"config key 'pretrain.encoder': {cfg['pretrain']['encoder']!r} is not a key of "
            f"'encoders' (known: {sorted(cfg['encoders'])})"
        )
    opt = cfg["pretrain"].get("optimizer")
    if opt and opt not in cfg["optimizers"]:
        raise ConfigError(
            f"config key 'pretrain.optimizer': {opt!r} is not a key of 'optimizers' "
            f"(known: {sorted(cfg['optimizers'])})"
        )
    for i, key in enumerate(cfg["run"]["encoders"]):
        if key not in cfg["encoders"]:
            raise ConfigError(f"config key 'run.encoders.{i}': {key!r} is not a key of 'encoders'")
    task = (cfg.get("monitor") or {}).get("task")
    if task and task not in task_dirs(cfg):
        raise ConfigError(
            f"config key 'monitor.task': {task!r} is not one of the evaluated tasks "
            f"({sorted(task_dirs(cfg))})"
        )
    for i, task in enumerate((cfg.get("finetune") or {}).get("tasks") or []):
        if task not in task_dirs(cfg):
            raise ConfigError(
                f"config key 'finetune.tasks.{i}': {task!r} is not one of the evaluated tasks "
                f"({sorted(task_dirs(cfg))}); fine-tune on one of them, or set finetune.tasks "
                "to [] for no fine-tuning"
            )
    from abt.plan import REFERENCES_FOLDER, references

    references(cfg)  # hear.references: each a reference the workflow can prepare tasks for
    if REFERENCES_FOLDER in cfg["encoders"]:
        raise ConfigError(
            f"config key 'encoders.{REFERENCES_FOLDER}': the name is taken (results/hear/"
            f"{REFERENCES_FOLDER}/ holds the measured references); name the encoder otherwise"
        )
    for key, enc in cfg["encoders"].items():
        if enc["optimizer"] not in cfg["optimizers"]:
            raise ConfigError(
                f"config key 'encoders.{key}.optimizer': {enc['optimizer']!r} is not a key of "
                f"'optimizers' (known: {sorted(cfg['optimizers'])})"
            )

    known_tasks = task_dirs(cfg)
    abl_names = set(cfg.get("ablations") or {})
    for study in cfg["report"].get("study_subset") or {}:
        if study not in (cfg.get("studies") or {}):
            raise ConfigError(
                f"config key 'report.study_subset.{study}': not a key of 'studies' "
                f"(known: {sorted(cfg.get('studies') or {})})"
            )
    for study, st in (cfg.get("studies") or {}).items():
        for i, a in enumerate(st["ablations"]):
            if a not in abl_names:
                raise ConfigError(
                    f"config key 'studies.{study}.ablations.{i}': {a!r} is not a key of 'ablations'"
                )
        for key in ("delta_from", "highlight"):
            if st.get(key) and st[key] not in st["ablations"]:
                raise ConfigError(
                    f"config key 'studies.{study}.{key}': {st[key]!r} is not one of the study's "
                    f"ablations {st['ablations']}"
                )
        subset = (cfg["report"].get("study_subset") or {}).get(study)
        if subset is not None:
            for i, a in enumerate(subset):
                if a not in st["ablations"]:
                    raise ConfigError(
                        f"config key 'report.study_subset.{study}.{i}': {a!r} is not one of the "
                        f"study's ablations {st['ablations']}"
                    )
            for key in ("delta_from", "highlight"):
                if st.get(key) and st[key] not in subset:
                    raise ConfigError(
                        f"config key 'report.study_subset.{study}': it must keep the study's "
                        f"{key} row {st[key]!r}"
                    )
        if st.get("plot") in ("line", "minmax") and not st.get("x"):
            raise ConfigError(f"config key 'studies.{study}.x' must be set for a {st['plot']} plot")
        if st.get("x") and st["x"] not in DERIVED_FIELDS:
            raise ConfigError(
                f"config key 'studies.{study}.x': {st['x']!r} is not a column of the ablation "
                f"summaries; the x axis can show one of {', '.join(DERIVED_FIELDS)}"
                + _did_you_mean(st["x"], DERIVED_FIELDS)
            )
    rep = cfg.get("report") or {}
    for sname, sw in (cfg.get("sweeps") or {}).items():
        if sw["encoder"] not in cfg["encoders"]:
            raise ConfigError(
                f"config key 'sweeps.{sname}.encoder': {sw['encoder']!r} is not a key of 'encoders'"
            )
        if sw["optimizer"] not in cfg["optimizers"]:
            raise ConfigError(
                f"config key 'sweeps.{sname}.optimizer': {sw['optimizer']!r} is not a key of "
                "'optimizers'"
            )
        try:
            sweep_run_config(cfg, sname)
        except SweepError as e:
            raise ConfigError(f"config key 'sweeps.{sname}.space': {e}") from None
    for i, name in enumerate(rep.get("sweeps") or []):
        if name not in (cfg.get("sweeps") or {}):
            raise ConfigError(f"config key 'report.sweeps.{i}': {name!r} is not a key of 'sweeps'")
    for enc, sname in (cfg["run"].get("from_sweeps") or {}).items():
        sw = (cfg.get("sweeps") or {}).get(sname)
        if sw is None:
            raise ConfigError(
                f"config key 'run.from_sweeps.{enc}': {sname!r} is not a key of 'sweeps'"
            )
        if sw["encoder"] != enc:
            raise ConfigError(
                f"config key 'run.from_sweeps.{enc}': sweep {sname!r} tunes encoder "
                f"{sw['encoder']!r}, not {enc!r}"
            )
    for i, t in enumerate(rep.get("hear_l") or []):
        if t not in known_tasks:
            raise ConfigError(
                f"config key 'report.hear_l.{i}': {t!r} is not one of the evaluated tasks "
                f"({sorted(known_tasks)})"
            )
    for i, name in enumerate(rep.get("studies") or []):
        if name not in (cfg.get("studies") or {}):
            raise ConfigError(
                f"config key 'report.studies.{i}': {name!r} is not a key of 'studies' "
                f"(known: {sorted(cfg.get('studies') or {})})"
            )
    for i, key in enumerate(rep.get("full_encoders") or []):
        if key not in cfg["encoders"]:
            raise ConfigError(
                f"config key 'report.full_encoders.{i}': {key!r} is not a key of 'encoders'"
            )
    if rep.get("studies") and not (cfg.get("monitor") or {}).get("task"):
        raise ConfigError(
            "config key 'monitor.task' must name a scene task when report.studies is set: the "
            "ablation tables report linear evaluation on it (FSD50K in the thesis)"
        )
    if (cfg.get("studies") or rep.get("studies")) and not rep.get("hear_l"):
        raise ConfigError("config key 'report.hear_l' must list the tasks ablations are scored on")
    check_row_tasks(cfg)  # no row that two studies score on different tasks
    for name in rep.get("studies") or []:
        study_tasks(cfg, name)  # the report's studies' tasks are evaluated here (others: planned)

    for v in variants(cfg):
        try:
            resolve(cfg, variant=v, schema=schema)
        except ConfigError as e:
            raise ConfigError(f"ablation {v!r}: {e}" if v != "baseline" else str(e)) from None
