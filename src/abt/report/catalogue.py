"""Task and model catalogue for the report: labels, categories, the thesis's published numbers.

The 18 HEAR 2021 tasks come from ``reported.yaml`` (thesis Tables 3.4/3.5); the embedded stand-ins
are listed here with the HEAR category they stand in for. A task the catalogue does not know is
shown under its own name in the ``other`` category (or ``timestamp`` when its HEAR metadata says
it is an event task), so a new task never disappears from a table.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from abt.config import parse_yaml
from abt.plan import layout_file

#: embedded task -> (label, category); the HEAR task each one stands in for is in
#: docs/embedded-data.md
EMBEDDED: dict[str, tuple[str, str]] = {
    "embedded_emotion": ("Emotion", "speech"),
    "embedded_keywords": ("Keywords", "speech"),
    "embedded_speakercount": ("SpkCount", "speech"),
    "embedded_envsounds": ("EnvSounds", "environment"),
    "embedded_genre": ("Genre", "music"),
    "embedded_pitch": ("Pitch", "music"),
    "embedded_office_events": ("OfficeEvents", "timestamp"),
}

#: display names of the encoders (the thesis's row labels)
ENCODER_LABELS: dict[str, str] = {
    "audiontt": "AudioNTT",
    "resnet18": "ResNet-18",
    "resnet18_regp_nrf": "ResNet-18 ReGP NRF",
    "vitc_b_16x8": "ViT_C-B (16x8)",
    "vitc_s_16x8": "ViT_C-S (16x8)",
    "vitc_t_16x8": "ViT_C-T (16x8)",
    "vitc_b_16x16": "ViT_C-B (16x16)",
    "vitc_b_8x8": "ViT_C-B (8x8)",
    "vitc_b_64x2": "ViT_C-B (64x2)",
    "vit_b_16x16": "ViT-B (16x16)",
    "audiontt_bt_lars": "AudioNTT (Barlow Twins' LARS)",
    "resnet18_bt_lars": "ResNet-18 (Barlow Twins' LARS)",
}

CATEGORY_TITLES = {
    "speech": ("4.1", "HEAR speech scene-based tasks"),
    "environment": ("4.2", "HEAR environmental sound scene-based tasks"),
    "music": ("4.3", "HEAR music scene-based tasks"),
    "timestamp": ("4.4", "HEAR timestamp-based tasks"),
    "other": (None, "Other tasks"),
}


class TablesFiles:
    """The paper's tables of one report scope, named here once (a folder:
    ``results/tables/<scope>/`` in the workflow, :data:`abt.plan.TABLES_DIR`; rule
    ``paper_tables``): Tables 4.1-4.4 (one CSV per HEAR category), Table 4.5, the training
    curves behind Fig. 4.4, trained vs random init per task, the random inits' probe levels, the
    fine-tuning scores, the trained runs against the measured references per task, and the
    grids the HEAR scores were predicted on (as recorded)."""

    TABLE_4_5, CURVES = "table_4_5.csv", "training_curves.csv"
    VS_RANDOM, RANDOM_PROBES = "hear_vs_random.csv", "random_init_probe.csv"
    FINETUNE, HEAR_SETTINGS = "finetune.csv", "hear_settings.csv"
    VS_REFERENCES, VS_REPORTED = "hear_vs_references.csv", "references_vs_reported.csv"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    @staticmethod
    def hear_key(category: str) -> str:
        """The key of a HEAR category's table (``table_4_1``; ``table_other``)."""
        num = CATEGORY_TITLES[category][0]
        return f"table_{num.replace('.', '_')}" if num else f"table_{category}"

    def hear(self, category: str) -> str:
        return f"{self.root}/{self.hear_key(category)}.csv"

    table_4_5 = layout_file("root", TABLE_4_5)
    curves = layout_file("root", CURVES)
    vs_random = layout_file("root", VS_RANDOM)
    random_probes = layout_file("root", RANDOM_PROBES)
    finetune = layout_file("root", FINETUNE)
    hear_settings = layout_file("root", HEAR_SETTINGS)
    vs_references = layout_file("root", VS_REFERENCES)
    vs_reported = layout_file("root", VS_REPORTED)


def read_written(path: str | os.PathLike[str]) -> Any:
    """A table the paper tables' job wrote (a pandas DataFrame), or None where it wrote none: no
    file, or an empty one (a comparison with nothing to compare)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file() or p.stat().st_size <= 1:
        return None
    return pd.read_csv(p)


_EXTRA: dict[str, str] = {}  # task -> category, registered from task metadata (event tasks)


@functools.cache
def reported() -> dict[str, Any]:
    """The thesis's published numbers (``reported.yaml``), never measured by this workflow."""
    text = (resources.files("abt.report") / "reported.yaml").read_text()
    return parse_yaml(text, "abt/report/reported.yaml")


#: the timestamp tasks' primary score among Table 4.4's columns (the kit's onset-only FMS)
REPORTED_ONSET = {"dcase2016_task2": "dcase_onset_fms", "maestro": "maestro_onset_fms"}


def reported_primary(model: str) -> dict[str, float]:
    """A model's published primary score per HEAR task (Tables 4.1-4.3, and Table 4.4's onset
    FMS for the two timestamp tasks); empty for a model the thesis does not print."""
    rep = reported()
    out = {t: float(v) for t, v in (rep["hear_scores"].get(model) or {}).items()}
    stamps = rep["hear_timestamp"].get(model) or {}
    out.update({t: float(stamps[k]) for t, k in REPORTED_ONSET.items() if k in stamps})
    return out


def register_task_metadata(task: str, task_dir: str | Path) -> None:
    """Let an unknown task's ``task_metadata.json`` decide scene vs timestamp."""
    p = Path(task_dir) / "task_metadata.json"
    if task in EMBEDDED or task in reported()["hear_tasks"] or not p.is_file():
        return
    meta = json.loads(p.read_text())
    if meta.get("embedding_type") == "event":
        _EXTRA[task] = "timestamp"


def task_category(task: str) -> str:
    if task in EMBEDDED:
        return EMBEDDED[task][1]
    hear = reported()["hear_tasks"]
    if task in hear:
        return hear[task]["category"]
    return _EXTRA.get(task, "other")


def task_label(task: str) -> str:
    if task in EMBEDDED:
        return EMBEDDED[task][0]
    hear = reported()["hear_tasks"]
    return hear[task]["label"] if task in hear else task


def average_label(study: Mapping[str, Any]) -> str:
    """What a study's average score is called: the HEAR-L average (thesis §4.3) unless the
    study scores its own tasks (``studies.<name>.tasks``)."""
    return "Task avg" if study.get("tasks") else "HEAR-L avg"


def encoder_label(key: str) -> str:
    return ENCODER_LABELS.get(key, key)
