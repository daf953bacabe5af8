"""Rendering (jinja2): LaTeX table fragments assembled by ``tables.tex``, and a self-contained
HTML report with every table, figure, run configuration and software version. The tables are
built by :mod:`abt.report.tables`, the statements by :mod:`abt.report.verdicts` (and
:mod:`abt.report.targets`); this module only renders them.

Measured numbers come only from the workflow's files. The thesis's published numbers
(``reported.yaml``) are shown in separate tables (or rows) labelled *reported, not measured*.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import importlib.metadata as md
import json
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from abt.plan import SweepFiles, study_rows
from abt.report.catalogue import TablesFiles, task_category, task_label
from abt.report.tables import (
    Table,
    encoder_tables,
    finetune_table,
    hear_tables,
    study_tables,
    sweep_tables,
    table_45,
    vs_random_table,
    vs_references_table,
    vs_reported_table,
)
from abt.report.targets import reference_gain_verdict
from abt.report.verdicts import pretraining_verdict, reported_reference_verdict, study_verdicts

SOFTWARE = ("abt", "torch", "numpy", "librosa", "pandas", "seaborn", "matplotlib", "jinja2",
            "optuna", "snakemake", "scikit-learn", "scipy", "soundfile")  # fmt: skip

_TEX_ESCAPE = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "[": "{[}",  # a row starting with [ would be read as the optional argument of \\
    "]": "{]}",
}


def tex_escape(s: Any) -> str:
    return "".join(_TEX_ESCAPE.get(c, c) for c in str(s))


def _env(latex: bool) -> jinja2.Environment:
    loader = jinja2.PackageLoader("abt.report", "templates")
    if latex:
        env = jinja2.Environment(
            loader=loader,
            block_start_string=r"\BLOCK{",
            block_end_string="}",
            variable_start_string=r"\VAR{",
            variable_end_string="}",
            comment_start_string=r"\#{",
            comment_end_string="}",
            line_comment_prefix="%#",
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )
        env.filters["tex"] = tex_escape
        env.filters["bold"] = lambda s: rf"\textbf{{{s}}}" if s else s
    else:
        env = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
        )
    return env


# ------------------------------------------------------------------------------- render


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in SOFTWARE:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import torch

        out["torch threads"] = str(torch.get_num_threads())
        out["cuda"] = str(torch.version.cuda)
    except ImportError:  # the report env may have no torch
        pass
    return out


def _image_data(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def render(
    cfg: Mapping[str, Any],
    scope: str,
    tables_dir: str,
    encoder_table: str,
    studies: Mapping[str, str],
    figures: Mapping[str, str],
    hparams: Mapping[str, str],
    out_tex: str,
    out_html: str,
    sweeps: Mapping[str, str] | None = None,
    tasks: Mapping[str, str] | None = None,
) -> None:
    """Write ``out_tex`` (a complete LaTeX document that ``\\input``s one fragment per table from
    ``tables/``, figures from ``figures/``) and the self-contained ``out_html``.

    ``studies``: study name -> summary CSV; ``figures``: name -> PNG path (a PDF next to it is used
    by LaTeX); ``hparams``: run label -> hparams.yaml of each pre-training run in the report.
    """
    out_dir = Path(out_tex).parent
    scale = cfg["run"]["name"]
    show_reported = bool((cfg.get("report") or {}).get("reported", True))
    tables: list[Table] = encoder_tables(encoder_table)
    tables += hear_tables(tables_dir, scale)
    tables += vs_random_table(tables_dir)
    tables += vs_references_table(tables_dir)
    tables += vs_reported_table(tables_dir)
    tables += table_45(tables_dir)
    tables += finetune_table(tables_dir, scale)
    for name, csv in studies.items():
        tables += study_tables(name, cfg["studies"][name], csv)
    figures = dict(figures)
    for name, d in (sweeps or {}).items():
        tables += sweep_tables(name, cfg["sweeps"][name], d)
        figures[f"sweep_{name}"] = SweepFiles.of_summary(d).png
    if not show_reported:
        tables = [t for t in tables if not t.reported]

    frag_dir = out_dir / "tables"
    fig_dir = out_dir / "figures"
    for d in (frag_dir, fig_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    latex = _env(latex=True)
    frag = latex.get_template("table.tex.j2")
    for t in tables:
        (frag_dir / f"{t.key}.tex").write_text(frag.render(t=t))
    figs = []
    for name, png in figures.items():
        png_p = Path(png)
        pdf_p = png_p.with_suffix(".pdf")
        shutil.copyfile(png_p, fig_dir / png_p.name)
        if pdf_p.is_file():
            shutil.copyfile(pdf_p, fig_dir / pdf_p.name)
        figs.append({"name": name, "pdf": f"figures/{pdf_p.name}", "png": png_p.name,
                     "data": _image_data(png), "caption": _figure_caption(cfg, name)})  # fmt: skip

    runs = {}
    for label, p in hparams.items():
        if not Path(p).is_file():
            raise FileNotFoundError(f"{p} (the hparams.yaml of run {label!r}) is missing; "
                                    "re-run that run's pre-training")  # fmt: skip
        text = Path(p).read_text()
        recorded = (yaml.safe_load(text) or {}).get("pretrain") or {}
        runs[label] = {"yaml": text, "sha": hashlib.sha256(text.encode()).hexdigest()[:12],
                       "epochs": recorded.get("epochs")}  # fmt: skip
    studied = {a for name in studies for a in study_rows(cfg, name)}
    targets = (cfg.get("report") or {}).get("targets") or {}
    ctx = {
        "scale": scale,
        "scope": scope,
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "tables": tables,
        "figures": figs,
        "verdict": pretraining_verdict(tables_dir, targets.get("beats_random_tasks"))
        + reference_gain_verdict(tables_dir, targets.get("reference_gain"))
        + reported_reference_verdict(tables_dir)
        + study_verdicts(studies, cfg),
        "software": software_versions(),
        "hear": _hear_settings(tables_dir),
        "runs": runs,
        "config_yaml": yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False),
        "tasks": _task_rows(tasks if tasks is not None else _configured_tasks(cfg)),
        "hear_l": [task_label(t) for t in (cfg.get("report") or {}).get("hear_l", [])],
        **_recorded_epochs(runs, set(hparams) - set(studied)),
    }
    Path(out_tex).write_text(latex.get_template("tables.tex.j2").render(**ctx))
    html = _env(latex=False).get_template("report.html.j2")
    Path(out_html).write_text(html.render(**ctx))


def _figure_caption(cfg: Mapping[str, Any], name: str) -> str:
    if name == "training_curves":
        return "Fig. 4.4: linear evaluation on the monitoring task during pre-training."
    if name.startswith("sweep_") and name[6:] in (cfg.get("sweeps") or {}):
        sw = cfg["sweeps"][name[6:]]
        num = f"Fig. {sw['figure']}{sw.get('panel') or ''}: " if sw.get("figure") else ""
        return f"{num}sweep {name[6:]} ({sw['encoder']}, {sw['optimizer']}): probe score per trial"
    st = (cfg.get("studies") or {}).get(name, {})
    num = f"Fig. {st['figure']}{st.get('panel') or ''}: " if st.get("figure") else ""
    return f"{num}{st.get('title', name)}"


def _hear_settings(tables_dir: str) -> dict[str, str]:
    """The grid(s) the report's HEAR scores were predicted on, as the runner recorded them
    (``hear_settings.csv`` of the paper tables); several are listed, never one picked."""
    path = TablesFiles(tables_dir).hear_settings
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing; re-run the paper tables (rule paper_tables)")
    df = pd.read_csv(path, dtype={"grid": str})
    if df.empty:
        raise ValueError(f"{path} lists no grid: the report has no HEAR scores")
    points = ["points not recorded" if pd.isna(p) else f"{int(p)} point{'s' * (int(p) != 1)}"
              for p in df["grid_points"]]  # fmt: skip
    return {"grid": ", ".join(df["grid"]), "points": ", ".join(points)}


def _recorded_epochs(runs: Mapping[str, Mapping[str, Any]], main: set[str]) -> dict[str, str]:
    """The pre-training epochs the report's runs recorded (their ``hparams.yaml``): the main
    runs' and the studies' rows (empty without such rows), distinct values listed."""

    def listed(labels):
        vals = sorted({int(runs[k]["epochs"]) for k in labels if runs[k]["epochs"] is not None})
        return ", ".join(str(v) for v in vals)

    return {"epochs": listed(k for k in runs if k in main),
            "ablation_epochs": listed(k for k in runs if k not in main)}  # fmt: skip


def _configured_tasks(cfg: Mapping[str, Any]) -> dict[str, str]:
    from abt.plan import task_dirs

    return task_dirs(dict(cfg))


def _task_rows(tasks: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"task": t, "label": task_label(t), "category": task_category(t), "dir": d}
            for t, d in tasks.items()]  # fmt: skip
