"""Which code a job runs (abt.codehash): followed through the package's imports, leaving out
the modules that declare themselves result-neutral."""

import re

from abt import codehash
from abt.codehash import code_digest, code_modules, result_neutral


def test_a_jobs_code_follows_its_imports_through_the_package():
    mods = code_modules("abt.jobs.pretrain:pretrain_torchrun")
    # the trainer, and what it imports in turn (the objective, the encoders, the store)
    assert {"abt.trainer", "abt.objective", "abt.encoders", "abt.data.melstore"} <= set(mods)
    assert "abt.report.render" not in mods  # a caption edit re-runs no pre-training


def test_the_trackers_are_no_part_of_any_digest():
    """The trainer imports abt.tracking, yet a tracker edit re-runs nothing and does not stop a
    resume (the trainer's resume provenance is the digest of abt.trainer)."""
    assert "abt.tracking" in codehash._module_imports("abt.trainer")
    assert result_neutral("abt.tracking")
    for entry in ("abt.trainer", "abt.jobs.pretrain:pretrain_torchrun",
                  "abt.jobs.pretrain:sweep_worker"):  # fmt: skip
        assert "abt.tracking" not in code_modules(entry)
    assert not result_neutral("abt.trainer") and not result_neutral("abt.objective")


def test_only_a_true_top_level_marker_counts(tmp_path, monkeypatch):
    cases = {
        "neutral": 'RESULT_NEUTRAL = "why"\n',
        "empty": 'RESULT_NEUTRAL = ""\n',
        "nested": 'def f():\n    RESULT_NEUTRAL = "why"\n',
        "none": "X = 1\n",
    }
    for name, src in cases.items():
        (tmp_path / f"{name}.py").write_text(src)
    monkeypatch.setattr(codehash, "module_file", lambda name: tmp_path / f"{name[4:]}.py")
    codehash.result_neutral.cache_clear()
    try:
        got = {n: result_neutral(f"abt.{n}") for n in cases}
    finally:
        codehash.result_neutral.cache_clear()
    assert got == {"neutral": True, "empty": False, "nested": False, "none": False}


def test_a_digest_is_short_hex_and_stable():
    d = code_digest("abt.trainer")
    assert re.fullmatch(r"[0-9a-f]{16}", d) and d == code_digest(["abt.trainer"])
