"""The one binding of rules to code: abt.jobs.JOBS. Each rule's code digest and its script's
function come from the same entry, so a rule can never re-run on one function's edits while its
script calls another."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from abt.jobs import JOBS, function

ROOT = Path(__file__).resolve().parents[1]


def _rules() -> dict[str, tuple[str, str]]:
    """rule name -> (the job of its ``code=CODE[...]`` param, its script's file name)."""
    out = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for i, block in enumerate(re.split(r"^(?=\s*rule\b)", smk.read_text(), flags=re.M)[1:]):
            named = re.match(r"\s*rule (\w+):", block)  # else a rule made in a loop
            name = named.group(1) if named else f"{smk.stem}:{i}"
            code = re.search(r'code=CODE\["(\w+)"\]', block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block)
            if code or script:
                out[name] = (code and code.group(1), script and script.group(1))
    return out


def test_every_job_names_functions_that_exist():
    for name, job in JOBS.items():
        for entry in job.functions:
            fn = function(name, entry.partition(":")[2])
            assert callable(fn) and f"{fn.__module__}:{fn.__name__}" == entry


@pytest.mark.parametrize("rule", sorted(_rules()))
def test_a_rules_script_runs_the_job_its_code_digest_covers(rule):
    job, script = _rules()[rule]
    assert job in JOBS and script, f"rule {rule}: code param {job!r}, script {script!r}"
    text = (ROOT / "workflow" / "scripts" / script).read_text()
    called = set(re.findall(r'function\("(\w+)"', text))
    assert called == {job}, f"{script} runs {called}, rule {rule} declares the code of {job!r}"
    helpers = r"jobs import function|workflow_io|plan|runspec|sweeps|report\.catalogue"
    direct = re.search(rf"^from abt\.(?!{helpers})", text, re.M)
    assert not direct, f"{script} imports a job's module itself"


def test_every_job_is_run_by_some_rule():
    assert {job for job, _ in _rules().values()} == set(JOBS)


def test_unknown_jobs_and_functions_are_named():
    with pytest.raises(KeyError, match="unknown job 'nope'; known: .*linear_eval"):
        function("nope")
    with pytest.raises(KeyError, match="name the one to call"):
        function("pretrain_mels")
    with pytest.raises(KeyError, match="runs no function 'nope'"):
        function("pretrain_mels", "nope")


def test_the_registry_imports_nothing_of_the_package():
    code = "import sys, abt.jobs; print(sorted(m for m in sys.modules if m.startswith('abt')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['abt', 'abt.jobs']"
