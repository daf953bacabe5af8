"""The metrics CSVs of a run (``train_metrics.csv``, ``epoch_metrics.csv``) that survive resumes.

Rows live in memory and are rewritten atomically on every append. The rows up to a resume
checkpoint are stored *in* that checkpoint (:meth:`CsvLog.text`), so a resumed run restores its
whole history even when the CSV was deleted meanwhile (Snakemake deletes the declared outputs of
an interrupted job) and drops rows written after the checkpoint (they are written again).

A ``sink`` (e.g. :meth:`abt.tracking.Tracker.feed`) gets the rows as they are stored: every row
written, and the whole history on a restore, with the values of the CSV file (floats to 6
significant digits).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class CsvLog:
    """Append-only CSV with an in-memory copy; ``enabled=False`` (DDP ranks > 0) writes nothing
    (and feeds no ``sink``)."""

    def __init__(
        self,
        path: str | Path,
        enabled: bool = True,
        sink: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.sink = sink
        self.rows: list[dict[str, Any]] = []

    def restore(self, text: str) -> None:
        """Replace the rows with those of ``text`` (a checkpoint's copy) and rewrite the file."""
        self.rows = list(csv.DictReader(io.StringIO(text))) if text else []
        self._rewrite()
        self._feed(self.rows)

    def text(self) -> str:
        """The CSV as text (what a checkpoint stores)."""
        buf = io.StringIO()
        self._write(buf)
        return buf.getvalue()

    @property
    def last(self) -> dict[str, Any]:
        if not self.rows:
            return {}
        return {k: num(v) for k, v in self.rows[-1].items()}

    def has(self, column: str, value: int) -> bool:
        return any(int(r[column]) == value for r in self.rows)

    def write(self, row: Mapping[str, Any]) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._rewrite()
        self._feed(self.rows[-1:])

    def _feed(self, rows: list[dict[str, Any]]) -> None:
        if self.sink is not None and self.enabled and rows:
            self.sink([dict(r) for r in rows])

    def _write(self, fh: Any) -> None:
        cols: list[str] = []
        for r in self.rows:
            cols += [k for k in r if k not in cols]
        if not cols:
            return
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)

    def _rewrite(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".part")
        try:
            with open(tmp, "w", newline="") as fh:
                self._write(fh)
        except BaseException as e:  # e.g. a full disk: no partial file left behind
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError) and e.filename is None:
                e.filename = str(tmp)  # a failed write() names no file: name the one written
            raise
        os.replace(tmp, self.path)


def num(v: Any) -> Any:
    """A CSV cell as a float when it is numeric, else unchanged."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return v
