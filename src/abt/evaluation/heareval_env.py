"""The separate, pinned HEAR evaluation venv and the official kit's runners as subprocesses.

heareval 2021.1.3 and hearvalidator 2021.0.6 run *unmodified* on Python 3.11 in their own venv:

* every dependency pinned in ``envs/hear-eval.constraints.txt`` (modern numpy/numba,
  pytorch-lightning 1.9.5, ``setuptools<81`` because dcase_util/lightning import ``pkg_resources``);
* ``heareval`` installed with ``--no-deps`` (its metadata pins numpy==1.19.2, numba==0.48 and
  tensorflow), ``hearvalidator`` with ``--no-deps --ignore-requires-python`` (it declares <3.9 but
  is pure Python);
* the shim directory :data:`SHIM_DIR` on ``PYTHONPATH``: a ``tensorflow`` stub (the kit imports TF
  at module level but only calls it for TF models) and ``sitecustomize`` -> ``hear_compat``
  (FitLoop.current_epoch setter for PL >= 1.6, upstream hear-eval-kit#432; pynvml name as bytes);
* our package on ``PYTHONPATH`` (``src/``), so the kit can ``import abt.hear`` — nothing of ours is
  pip-installed into the venv, so no build step and no stale copy;
* ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch >= 2.6 cannot read Lightning's own checkpoints with
  ``weights_only``; ``abt.hear.load_model`` still passes ``weights_only=True`` explicitly).

:func:`ensure_env` builds the venv once; a stamp file holds a hash of the pins, the install
commands and the Python version, and the venv is rebuilt when it changes. A lock file serialises
concurrent builds (parallel workflow jobs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import abt
from abt.locks import critical_section

PACKAGE_DIR = Path(__file__).resolve().parent
SHIM_DIR = PACKAGE_DIR / "hear_compat"
SRC_DIR = Path(abt.__file__).resolve().parent.parent
REPO_ROOT = SRC_DIR.parent
CONSTRAINTS = REPO_ROOT / "envs" / "hear-eval.constraints.txt"
STAMP_NAME = ".abt-hear-env.json"
HEAR_MODULE = "abt.hear"

#: what ``pip install -c CONSTRAINTS`` installs (versions come from the constraints file)
KIT_REQUIREMENTS: tuple[str, ...] = (
    "setuptools",
    "torch",
    "pytorch-lightning",
    "numpy",
    "dcase_util",
    "sed_eval",
    "intervaltree",
    "more-itertools",
    "pandas",
    "python-slugify",
    "scikit-learn",
    "scipy",
    "soundfile",
    "torchinfo",
    "tqdm",
    "click",
    "pynvml",
    "PyYAML",
    "resampy",  # imported by torchcrepe at module level
)
#: installed with --no-deps (their metadata cannot be satisfied on Python 3.11)
KIT_NODEPS: tuple[str, ...] = ("heareval",)
KIT_NODEPS_ANY_PYTHON: tuple[str, ...] = ("hearvalidator",)
#: the measured references' packages (:mod:`abt.evaluation.references`), --no-deps after the kit:
#: hearbaseline's metadata pins numpy 1.19 / numba 0.48 / tensorflow; torchcrepe's asks for a
#: torchaudio, which has no release for torch 2.13 and which the HEAR path never calls
#: (``hear_compat/fallback/torchaudio`` stands in for it)
REFERENCE_NODEPS: tuple[str, ...] = ("hearbaseline", "torchcrepe")

#: ``grid`` argument of :func:`run_predictions` -> heareval predictions-runner options
GRIDS: dict[str, tuple[str, ...]] = {
    "default": ("--grid", "default", "--grid-points", "8"),  # the HEAR 2021 protocol (paper)
    # the kit's own "fast" grid (max 10/50 epochs); the CPU-scale default, with hear.grid_points
    "fast": ("--grid", "fast", "--grid-points", "1"),
    # the kit's "faster" grid: a smoke test whose scores underfit; tests only
    "smoke": ("--grid", "faster", "--grid-points", "1"),
}
PREDICTION_SETTINGS = "abt-prediction-settings.json"
TAIL_LINES = 60


class KitError(RuntimeError):
    """A kit subprocess failed; the message carries the command and the tail of its output."""


class EnvBuildError(RuntimeError):
    """Building the evaluation venv failed."""


# ------------------------------------------------------------------------------------ pins


def read_constraints(path: str | Path = CONSTRAINTS) -> dict[str, str]:
    """``{normalised name: version}`` from a pip constraints file (``name==version`` lines)."""
    pins: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            raise EnvBuildError(f"{path}: only exact pins 'name==version' are allowed, got {raw!r}")
        name, version = (s.strip() for s in line.split("==", 1))
        pins[_norm(name)] = version
    return pins


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _install_plan(constraints: Path, extra: Sequence[str] = ()) -> list[list[str]]:
    """The pip argument lists :func:`ensure_env` runs, in order: the kit (every version from the
    constraints file), then each of ``extra`` (a user's HEAR module: ``name==version`` or a wheel
    file, :func:`abt.evaluation.references.check_pip`) with the same constraints, so it cannot
    move a pinned package."""
    pins = read_constraints(constraints)
    for name in (*KIT_REQUIREMENTS, *KIT_NODEPS, *KIT_NODEPS_ANY_PYTHON, *REFERENCE_NODEPS):
        if _norm(name) not in pins:
            raise EnvBuildError(f"{constraints}: no pin for {name!r}")
    c = ["-c", str(constraints)]
    plan = [["install", *c, *KIT_REQUIREMENTS]]
    plan += [["install", "--no-deps", *c, f"{n}=={pins[_norm(n)]}"] for n in KIT_NODEPS]
    plan += [
        ["install", "--no-deps", "--ignore-requires-python", *c, f"{n}=={pins[_norm(n)]}"]
        for n in KIT_NODEPS_ANY_PYTHON
    ]
    plan += [["install", "--no-deps", *c, *(f"{n}=={pins[_norm(n)]}" for n in REFERENCE_NODEPS)]]
    plan += [["install", *c, str(req)] for req in extra]
    return plan


def env_hash(
    constraints: str | Path = CONSTRAINTS, python: str = sys.executable, extra: Sequence[str] = ()
) -> str:
    """Hash of everything that defines the venv: pins, install commands (with the ``extra``
    requirements; a wheel file counts by its bytes), Python version."""
    pyver = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    h = hashlib.sha256()
    h.update(Path(constraints).read_bytes())
    plan = _install_plan(Path(constraints), extra)
    h.update(json.dumps(plan).replace(str(constraints), "C").encode())
    for req in extra:
        if Path(req).is_file():
            h.update(hashlib.sha256(Path(req).read_bytes()).hexdigest().encode())
    h.update(pyver.encode())
    return h.hexdigest()[:16]


def env_python(env_dir: str | Path) -> Path:
    return Path(env_dir) / "bin" / "python"


def read_stamp(env_dir: str | Path) -> dict[str, Any] | None:
    p = Path(env_dir) / STAMP_NAME
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def ensure_env(
    env_dir: str | Path,
    *,
    python: str = sys.executable,
    constraints: str | Path = CONSTRAINTS,
    log: str | Path | None = None,
    quiet: bool = True,
    extra: Sequence[str] = (),
) -> Path:
    """Create (first use) or reuse the pinned evaluation venv at ``env_dir``; return ``env_dir``.

    Idempotent: if the stamp's hash matches (pins, install commands, Python version) nothing is
    done. Otherwise the venv is removed and rebuilt — only if ``env_dir`` is empty, holds our stamp
    or is a venv (``pyvenv.cfg``); anything else raises rather than deleting a stranger's folder.
    ``python`` must be Python 3.11 (``>=3.9`` works for pip but 3.11 is what was validated).
    pip's output goes to ``log`` (default ``env_dir/abt-install.log``). ``extra``: requirements
    installed after the kit (users' HEAR modules, exact pins or wheel files); they are part of the
    stamp, so adding or changing one rebuilds the venv.
    """
    env_dir = Path(env_dir).absolute()
    constraints = Path(constraints)
    if not constraints.is_file():
        raise EnvBuildError(f"constraints file {constraints} is missing")
    extra = [str(Path(r).absolute()) if Path(r).is_file() else str(r) for r in extra]
    want = env_hash(constraints, python, extra)
    lock = (
        Path(tempfile.gettempdir())
        / f"abt-hear-env-{hashlib.sha1(bytes(env_dir)).hexdigest()[:12]}.lock"
    )
    with critical_section(lock):
        stamp = read_stamp(env_dir)
        if stamp and stamp.get("hash") == want and env_python(env_dir).exists():
            return env_dir
        if env_dir.exists():
            ours = stamp or (env_dir / "pyvenv.cfg").exists()
            if not ours and {p.name for p in env_dir.iterdir()} - {"abt-install.log"}:
                raise EnvBuildError(
                    f"{env_dir} exists and is not an evaluation venv; refusing to replace it"
                )
            shutil.rmtree(env_dir)
        env_dir.mkdir(parents=True)
        log_path = Path(log) if log else env_dir / "abt-install.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log_path, "w") as lf:
            _logged_run([python, "-m", "venv", str(env_dir)], lf)
            py = str(env_python(env_dir))
            flags = ["--quiet"] if quiet else []
            for args in _install_plan(constraints, extra):
                _logged_run([py, "-m", "pip", *args[:1], *flags, *args[1:]], lf)
            # the kit and the shipped references must import with the shims and our package:
            # fail here, not mid-workflow
            probe = (
                "import heareval.embeddings.runner, heareval.predictions.runner, "
                "hearvalidator.validate, abt.hear, hearbaseline.naive, hearbaseline.torchcrepe, "
                "hear_compat; hear_compat.check()"
            )
            _logged_run([py, "-c", probe], lf, env=kit_env(env_dir))
        stamp = {
            "hash": want,
            "python": platform.python_version(),
            "constraints": str(constraints),
            "extra": extra,
            "install_seconds": round(time.perf_counter() - t0, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (env_dir / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")
    return env_dir


def _logged_run(cmd: Sequence[str], lf: Any, env: Mapping[str, str] | None = None) -> None:
    lf.write(f"$ {' '.join(cmd)}\n")
    lf.flush()
    r = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env)
    lf.flush()
    if r.returncode != 0:
        tail = _tail(Path(lf.name))
        raise EnvBuildError(
            f"building the HEAR evaluation venv failed (exit {r.returncode}) at:\n  "
            f"{' '.join(cmd)}\nlog: {lf.name}\n--- last lines ---\n{tail}"
        )


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no output)"
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------------------- running


def kit_env(
    env_dir: str | Path, *, threads: int = 1, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment variables for running the kit from the venv at ``env_dir``.

    ``PYTHONPATH`` = shim dir + our ``src`` (nothing inherited), ``PATH`` starts with the venv's
    ``bin``, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, ``OMP_NUM_THREADS=threads`` (1 on CI: with
    the default thread count the kit's tiny MLPs ran 3-7x slower on a loaded 2-core machine).
    """
    env = dict(os.environ if base is None else base)
    for k in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(k, None)
    env_bin = str(Path(env_dir).absolute() / "bin")
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), str(SRC_DIR)]),
            "PATH": os.pathsep.join([env_bin, env.get("PATH", "/usr/bin:/bin")]),
            "VIRTUAL_ENV": str(Path(env_dir).absolute()),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "PYTHONNOUSERSITE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
        }
    )
    return env


def _run_kit(
    cmd: Sequence[str],
    env_dir: Path,
    *,
    cwd: Path,
    log: str | Path | None,
    what: str,
    threads: int = 1,
    timeout: float | None = None,
) -> str:
    log_path = Path(log) if log else cwd / "kit.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as lf:
        lf.write(f"$ {' '.join(map(str, cmd))}\n(cwd {cwd})\n")
        lf.flush()
        try:
            r = subprocess.run(
                list(map(str, cmd)),
                cwd=cwd,
                env=kit_env(env_dir, threads=threads),
                stdout=lf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise KitError(
                f"{what} timed out after {timeout} s\n--- last lines of {log_path} ---\n"
                f"{_tail(log_path)}"
            ) from None
    out = log_path.read_text(errors="replace")
    if r.returncode != 0:
        raise KitError(
            f"{what} failed (exit {r.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- last lines of {log_path} ---\n{_tail(log_path)}"
        )
    return out


def _check_env(env_dir: str | Path) -> Path:
    env_dir = Path(env_dir).absolute()
    if not env_python(env_dir).exists() or read_stamp(env_dir) is None:
        raise EnvBuildError(
            f"{env_dir} is not a built evaluation venv: build it first with "
            f"`abt hear env {env_dir}` (the workflow's setup_hear_env rule does "
            "the same)"
        )
    return env_dir


def _check_ckpt(ckpt: str | Path) -> Path:
    from abt.hear import read_checkpoint  # cheap: torch only

    ckpt = Path(ckpt).absolute()
    read_checkpoint(ckpt)  # clear error now rather than a traceback from inside the kit
    return ckpt


@contextlib.contextmanager
def _scratch(scratch_dir: str | Path | None, keep: bool) -> Iterator[Path]:
    if scratch_dir is not None:
        p = Path(scratch_dir).absolute()
        p.mkdir(parents=True, exist_ok=True)
        yield p
        return
    p = Path(tempfile.mkdtemp(prefix="abt-heareval-"))
    try:
        yield p
    finally:
        if not keep:
            shutil.rmtree(p, ignore_errors=True)


def run_validator(
    env_dir: str | Path,
    ckpt: str | Path,
    *,
    device: str = "cpu",
    log: str | Path | None = None,
    timeout: float | None = 1800,
) -> str:
    """``hear-validator abt.hear --model CKPT --device DEVICE``; returns its output."""
    env_dir = _check_env(env_dir)
    ckpt = _check_ckpt(ckpt)
    return run_module_validator(env_dir, HEAR_MODULE, ckpt, device=device, log=log,
                                timeout=timeout)  # fmt: skip


def run_module_validator(
    env_dir: str | Path,
    module: str,
    model: str | Path | None = None,
    *,
    device: str = "cpu",
    log: str | Path | None = None,
    timeout: float | None = 1800,
) -> str:
    """``hear-validator MODULE [--model MODEL] --device DEVICE`` for any HEAR module in the venv;
    returns its output (a :class:`KitError` with the tail of it when the validator fails)."""
    env_dir = _check_env(env_dir)
    cmd: list[Any] = [env_dir / "bin" / "hear-validator", module]
    if model is not None:
        cmd += ["--model", Path(model).absolute()]
    with _scratch(None, keep=False) as cwd:
        return _run_kit([*cmd, "--device", device], env_dir, cwd=cwd, log=log,
                        what="hear-validator", timeout=timeout)  # fmt: skip


class MissingRateError(FileNotFoundError):
    """A task folder lacks the ``<rate>/`` audio folder a HEAR module's sample rate needs."""


def _check_tasks(
    task_dirs: Sequence[Path], sample_rate: int = 16000, module: str = HEAR_MODULE
) -> None:
    from abt.data.hear_tasks import read_task, sample_rates

    names = [t.name for t in task_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"task directory names must be unique, got {names}")
    for t in task_dirs:
        if t.is_dir() and sample_rate not in sample_rates(t):
            raise MissingRateError(
                f"{t}: no {sample_rate}/ audio folder (it has {sample_rates(t)}); {module} "
                f"declares sample_rate {sample_rate} and the kit reads <task>/{sample_rate}/: "
                f"add it with `abt add-rates {t} --rate {sample_rate}`"
            )
        info = read_task(t, sample_rate=sample_rate)  # raises HearTaskError naming the file
        if not info.labels or all(len(v) == 0 for v in info.labels.values()):
            raise ValueError(f"{t}: the task has no clips")


def run_embeddings(
    env_dir: str | Path,
    ckpt: str | Path,
    tasks_dir: str | Path,
    embeddings_dir: str | Path,
    *,
    task: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Path]:
    """:func:`run_embeddings_of` the task directories in ``tasks_dir`` (``task`` picks some by
    directory name; default: every subdirectory)."""
    tasks_dir = Path(tasks_dir).absolute()
    if not tasks_dir.is_dir():
        raise FileNotFoundError(f"tasks directory {tasks_dir} does not exist")
    if task is None:
        selected = sorted(p for p in tasks_dir.iterdir() if p.is_dir())
    else:
        names = [task] if isinstance(task, str) else list(task)
        selected = [tasks_dir / n for n in names]
    return run_embeddings_of(env_dir, ckpt, selected, embeddings_dir, **kwargs)


def run_embeddings_of(
    env_dir: str | Path,
    ckpt: str | Path,
    task_dirs: Sequence[str | Path],
    embeddings_dir: str | Path,
    **kwargs: Any,
) -> dict[str, Path]:
    """``python -m heareval.embeddings.runner abt.hear --model CKPT`` on the HEAR task
    directories ``task_dirs`` (anywhere on disk), in *one* kit process:
    :func:`run_module_embeddings` of our module at 16 kHz. Outputs
    ``embeddings_dir/abt.hear/<task>/`` (returned, by task directory name)."""
    env_dir = _check_env(env_dir)
    ckpt = _check_ckpt(ckpt)
    return run_module_embeddings(env_dir, HEAR_MODULE, ckpt, task_dirs, embeddings_dir,
                                 sample_rate=16000, **kwargs)  # fmt: skip


def run_module_embeddings(
    env_dir: str | Path,
    module: str,
    model: str | Path | None,
    task_dirs: Sequence[str | Path],
    embeddings_dir: str | Path,
    *,
    sample_rate: int,
    overwrite: bool = True,
    log: str | Path | None = None,
    scratch_dir: str | Path | None = None,
    timeout: float | None = None,
) -> dict[str, Path]:
    """``python -m heareval.embeddings.runner MODULE [--model MODEL]`` on ``task_dirs`` in one
    kit process, for any HEAR module whose model declares ``sample_rate`` (the kit reads
    ``<task>/<sample_rate>/``; a task without that folder is a :class:`MissingRateError`).

    Each task is validated with :func:`abt.data.hear_tasks.read_task` at that rate first, then
    symlinked into a scratch folder that the runner iterates (it takes every entry of
    ``--tasks-dir``). Outputs: ``embeddings_dir/<module>/<task>/`` (returned, by task directory
    name). ``overwrite`` deletes existing outputs first: the runner would otherwise skip a task
    whose ``.done.embeddings`` exists even if the model changed.
    """
    env_dir = _check_env(env_dir)
    selected = [Path(t).absolute() for t in task_dirs]
    if not selected:
        raise ValueError("no task directories to embed")
    _check_tasks(selected, sample_rate, module)
    out_root = Path(embeddings_dir).absolute()
    outs = {t.name: out_root / module / t.name for t in selected}
    if overwrite:
        for p in outs.values():
            shutil.rmtree(p, ignore_errors=True)
    out_root.mkdir(parents=True, exist_ok=True)
    with _scratch(scratch_dir, keep=False) as cwd:
        links = cwd / "tasks"
        links.mkdir(exist_ok=True)
        for t in selected:
            dst = links / t.name
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(t.resolve(), target_is_directory=True)
        cmd: list[Any] = [env_dir / "bin" / "python", "-m", "heareval.embeddings.runner", module]
        if model is not None:
            cmd += ["--model", Path(model).absolute()]
        cmd += ["--tasks-dir", links, "--embeddings-dir", out_root]
        _run_kit(cmd, env_dir, cwd=cwd, log=log, what="heareval embeddings runner",
                 timeout=timeout)  # fmt: skip
    for p in outs.values():
        if not (p / ".done.embeddings").exists():
            raise KitError(f"the embeddings runner finished but {p}/.done.embeddings is missing")
    return outs


#: files the predictions runner writes into the task dir (removed on overwrite, never linked)
PREDICTION_OUTPUTS = (
    "prediction-done.json",
    "test.predicted-scores.json",
    "prediction.log",
    "test.predictions.json",
    "test.predicted-labels.pkl",
    PREDICTION_SETTINGS,
)


def _is_prediction_output(name: str) -> bool:
    return name in PREDICTION_OUTPUTS or name.endswith(".predictions.pkl")


def run_predictions(
    env_dir: str | Path,
    task_embedding_dir: str | Path,
    grid: str = "default",
    *,
    out_dir: str | Path | None = None,
    **kwargs: Any,
) -> Path:
    """:func:`run_predictions_many` of one embedding task dir; returns its scores file."""
    return run_predictions_many(env_dir, [(task_embedding_dir, out_dir)], grid, **kwargs)[0]


def run_predictions_many(
    env_dir: str | Path,
    tasks: Sequence[tuple[str | Path, str | Path | None]],
    grid: str = "default",
    *,
    grid_points: int | None = None,
    overwrite: bool = True,
    keep_lightning_logs: bool = False,
    log: str | Path | None = None,
    scratch_dir: str | Path | None = None,
    threads: int = 1,
    timeout: float | None = None,
) -> list[Path]:
    """``python -m heareval.predictions.runner`` on several embedding task dirs in *one* kit
    process (its start-up and imports dominate on small tasks); returns the scores files in the
    order of ``tasks``, pairs ``(task_embedding_dir, out_dir or None)``.

    ``grid``: ``"default"`` (the HEAR 2021 protocol: 8 points of the default grid), ``"fast"``
    (the kit's fast grid, 1 point unless ``grid_points``) or ``"smoke"`` (``--grid faster
    --grid-points 1``, a smoke test whose numbers underfit and are not comparable).
    ``grid_points`` overrides the number of points. The settings are written to
    ``abt-prediction-settings.json`` next to each scores file.

    The runner writes its outputs (``test.predicted-scores.json``, ``*.predictions.pkl``, ...) into
    the directory it is given. With an ``out_dir`` that is a fresh directory holding symlinks to the
    embedding dir's top-level files (all the runner reads), so the embeddings stay untouched and
    several grids can be evaluated from one extraction; without it, the embedding dir itself.

    The runner is started in a scratch dir and given the task dirs through *relative* symlink
    paths, so Lightning's logs/checkpoints (``./logs/<path>/``, hundreds of MB) land in the scratch
    dir and are deleted afterwards (``keep_lightning_logs`` keeps them when a ``scratch_dir`` is
    given). ``scores["embedding_path"]`` therefore reads ``emb/<task>``.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    if not tasks:
        raise ValueError("no task embedding dirs to predict")
    env_dir = _check_env(env_dir)
    opts = list(GRIDS[grid])
    if grid_points is not None:
        opts[opts.index("--grid-points") + 1] = str(int(grid_points))
    targets = [_prediction_target(t, o, overwrite) for t, o in tasks]
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"prediction dirs must have distinct names, got {names}")
    with _scratch(scratch_dir, keep=keep_lightning_logs) as cwd:
        rels = []
        for target in targets:
            link = cwd / "emb" / target.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target, target_is_directory=True)
            rels.append(Path("emb") / target.name)
        cmd = [env_dir / "bin" / "python", "-m", "heareval.predictions.runner", *rels, *opts]
        t0 = time.perf_counter()
        _run_kit(
            cmd,
            env_dir,
            cwd=cwd,
            log=log,
            what="heareval predictions runner",
            threads=threads,
            timeout=timeout,
        )
        elapsed = time.perf_counter() - t0
        if not keep_lightning_logs:
            shutil.rmtree(cwd / "logs", ignore_errors=True)
    pins = read_constraints() if CONSTRAINTS.is_file() else {}
    out = []
    for (tdir, _), target in zip(tasks, targets, strict=True):
        scores = target / "test.predicted-scores.json"
        if not scores.exists():
            raise KitError(f"the predictions runner finished but {scores} is missing")
        settings = {
            "grid": grid,
            "grid_points": int(opts[opts.index("--grid-points") + 1]),
            "runner_options": opts,
            "embeddings": str(Path(tdir).absolute()),
            "heareval": pins.get("heareval"),
            "pytorch-lightning": pins.get("pytorch-lightning"),
            "deterministic": True,
            "seconds_all_tasks": round(elapsed, 1),
            "tasks_in_process": len(tasks),
        }
        (target / PREDICTION_SETTINGS).write_text(json.dumps(settings, indent=1) + "\n")
        out.append(scores)
    return out


def _prediction_target(
    task_embedding_dir: str | Path, out_dir: str | Path | None, overwrite: bool
) -> Path:
    """The folder the runner writes a task's predictions into (prepared, see above)."""
    tdir = Path(task_embedding_dir).absolute()
    for need in ("task_metadata.json", ".done.embeddings"):
        if not (tdir / need).exists():
            raise FileNotFoundError(
                f"{tdir} is not a finished embedding task dir ({need} missing); "
                "run run_embeddings() first"
            )
    if out_dir is None:
        if overwrite:
            for p in tdir.iterdir():
                if p.is_file() and _is_prediction_output(p.name):
                    p.unlink()
        return tdir
    target = Path(out_dir).absolute()
    if target == tdir:
        raise ValueError("out_dir must differ from the embedding dir (leave it None instead)")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists (pass overwrite=True to replace it)")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for p in sorted(tdir.iterdir()):
        if p.is_file() and not _is_prediction_output(p.name):
            (target / p.name).symlink_to(p)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m abt.evaluation.heareval_env [ENV_DIR] [--python P]``: the same as
    ``abt hear env``."""
    from abt.cli import main as abt_main

    return abt_main(["hear", "env", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
