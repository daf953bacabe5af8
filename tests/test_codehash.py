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


def test_a_report_edit_re_runs_no_pre_training_and_does_not_stop_a_resume():
    """Found from a re-run after a report change: the pre-training job's digest (and the
    trainer's, which guards a resume) followed abt.cli's lazy imports of every command, so a
    caption edit re-ran every pre-training and refused to continue its checkpoints."""
    from abt.jobs import JOBS

    report = {"abt.report.render", "abt.report.tables", "abt.report.figures",
              "abt.report.catalogue", "abt.report.verdicts", "abt.report.aggregate"}  # fmt: skip
    other_commands = {"abt.export", "abt.embed", "abt.finetune", "abt.jobs.hear"}
    for code in (JOBS["pretrain"].code, "abt.trainer"):
        mods = set(code_modules(code))
        assert not mods & (report | other_commands), sorted(mods & (report | other_commands))
    assert "abt.evaluation.heareval_env" not in code_modules("abt.trainer")
    # the command the job runs under torchrun still counts, with what it imports
    job = set(code_modules(JOBS["pretrain"].code))
    assert {"abt.cli", "abt.jobs.pretrain", "abt.runspec"} <= job
    assert codehash.by_function("abt.cli") and not codehash.by_function("abt.trainer")


def test_a_dispatcher_counts_by_function(tmp_path, monkeypatch):
    """A module marked CODE_BY_FUNCTION counts, when imported, its file and its top-level
    imports; one of its functions named as an entry counts what that function imports."""
    files = {
        "abt": "",
        "abt.disp": 'from abt import base\nCODE_BY_FUNCTION = "why"\n'
                    "def a():\n    from abt import heavy_a\n"
                    "def b():\n    from abt import heavy_b\n",
        "abt.user": "def f():\n    from abt import disp\n",
        "abt.base": "", "abt.heavy_a": "", "abt.heavy_b": "",
    }  # fmt: skip
    paths = {}
    for name, src in files.items():
        p = tmp_path / f"{name}.py"
        p.write_text(src)
        paths[name] = p
    monkeypatch.setattr(codehash, "module_file", lambda name: paths.get(name))
    caches = (codehash.result_neutral, codehash.by_function, codehash._module_imports)
    for c in caches:
        c.cache_clear()
    try:
        user, entry = code_modules("abt.user"), code_modules("abt.disp:a")
    finally:
        for c in caches:
            c.cache_clear()
    assert user == ["abt", "abt.base", "abt.disp", "abt.user"]
    assert entry == ["abt", "abt.base", "abt.disp", "abt.heavy_a"]


def test_the_job_binding_and_the_digest_code_re_run_nothing():
    """abt.jobs (the binding of rules to code, every job module's parent package) and
    abt.codehash are no part of any digest: adding a job or changing how digests are taken
    re-ran every job of every stage; each job's own module still counts."""
    from abt.jobs import JOBS

    assert result_neutral("abt.jobs") and result_neutral("abt.codehash")
    for name, job in JOBS.items():
        mods = code_modules(job.code)
        assert not {"abt.jobs", "abt.codehash"} & set(mods), name
        assert {e.partition(":")[0] for e in job.functions} <= set(mods), name
