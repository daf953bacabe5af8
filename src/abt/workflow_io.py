"""Glue for ``workflow/scripts`` adapters: log redirection and thread settings for a job."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def job_log(log_path: str | None) -> Iterator[None]:
    """Send stdout/stderr of the job to its Snakemake log; errors end up in the log too."""
    if not log_path:
        yield
        return
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with (
        open(log_path, "w", buffering=1) as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        try:
            yield
        except Exception:
            traceback.print_exc(file=fh)
            raise


def use_package_from(src: str | os.PathLike[str]) -> None:
    """Put ``src`` (the checkout's ``src/``) first on ``PYTHONPATH`` for every job the workflow
    starts, so each ``workflow/scripts`` adapter imports this checkout's ``abt``."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    src = str(src)
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *[p for p in parts if p != src]])


def set_threads(n: int) -> None:
    """Pin torch/BLAS threads to the job's share (OpenMP spin-wait makes oversubscription slow)."""
    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import torch

    torch.set_num_threads(n)


def checked_identity(spec: Any, identity: Any) -> Any:
    """``spec`` (a :class:`abt.runspec.RunSpec` the job resolved from the configuration) after
    checking that its identity is the one in the rule's params, which decided the re-run."""
    from abt.plan import canonical

    if canonical(spec.identity()) != identity:
        raise RuntimeError(
            "the run resolved by the job differs from the one its rule planned (params.run); "
            "the configuration changed between planning and running: run snakemake again"
        )
    return spec


def run(snakemake: Any, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run ``fn(**kwargs)`` with the job's log and thread count."""
    log = snakemake.log[0] if len(snakemake.log) else None
    with job_log(log):
        set_threads(snakemake.threads)
        print(f"[abt] {fn.__module__}.{fn.__name__} (python {sys.version.split()[0]})", flush=True)
        try:
            return fn(**kwargs)
        except KeyboardInterrupt as e:  # one line in the log (what is kept), no traceback
            print(f"[abt] {e or 'interrupted'}", flush=True)
            raise SystemExit(130) from None
