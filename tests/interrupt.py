"""Deterministic interruption for tests: the trainer's ``ABT_TEST_HOLD`` hook holds a run right
after its first resume checkpoint (:func:`abt.rundir.hold_point`), so a test interrupts it at a
known point instead of racing a timer."""

import json
import os
import signal
import time
from pathlib import Path


def sigint_default() -> None:
    """A ``preexec_fn``: Ctrl-C's default action in the child even when the suite itself runs
    with SIGINT ignored (a background job of a non-interactive shell, ``nohup``), where Python
    would install no KeyboardInterrupt handler and an interrupted child would never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hold_env(path: Path, run: int = 1) -> dict[str, str]:
    """Environment variables that hold the ``run``-th run a process trains at ``path``."""
    return {"ABT_TEST_HOLD": str(path), "ABT_TEST_HOLD_RUN": str(run)}


def wait_held(path: Path, proc=None, timeout: float = 900) -> dict:
    """Wait until the run is held (``path`` written); fail if ``proc`` ends first."""
    deadline = time.time() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            out = proc.communicate()[0] if proc.stdout else ""
            raise AssertionError(f"the process ended (rc {proc.returncode}) before it was held: "
                                 f"{(out or '')[-3000:]}")  # fmt: skip
        assert time.time() < deadline, "the run was not held in time"
        time.sleep(0.05)
    return json.loads(path.read_text())


def release(path: Path) -> None:
    """Let a held run go on."""
    Path(str(path) + ".release").write_text(str(os.getpid()))
