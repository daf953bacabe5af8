"""Repository conventions: the README's commands, CI calling the README test command, layout."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README needs a Quickstart code block"
    cmds = [
        ln.strip()
        for ln in block.group(1).splitlines()
        if ln.strip() and not ln.strip().startswith("#")
    ]
    return cmds


def test_readme_has_exactly_two_quickstart_commands():
    cmds = readme_commands()
    assert len(cmds) == 2, cmds
    assert "snakemake" in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmds = [
        ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    # CI may quiet pip (-q); otherwise identical
    assert any(c.replace(" -q", "") == test_cmd.replace(" -q", "") for c in ci_cmds), (
        test_cmd,
        ci_cmds,
    )


def test_top_level_layout():
    for p in (
        "Snakefile",
        "workflow",
        "config.yaml",
        "envs",
        "src",
        "results",
        "report",
        "tests",
        "profiles",
        "README.md",
        "pyproject.toml",
        ".ci",
    ):
        assert (ROOT / p).exists(), p
