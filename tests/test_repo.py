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


def test_readme_quickstart_runs_tests_embeds_and_exports():
    """Four commands: the main run, the tests, then embeddings of a folder with the run's encoder
    and its export (both on the default run's folder, as the workflow lays it out)."""
    from abt.config import load_config
    from abt.plan import run_dir, task_dirs

    cmds = readme_commands()
    assert len(cmds) == 4, cmds
    assert "snakemake" in cmds[0] and "pytest" in cmds[1]
    embed, export = cmds[2].split(), cmds[3].split()
    assert embed[1] == "embed" and export[1] == "export"
    cfg = load_config(ROOT / "config.yaml")
    run = run_dir(cfg["pretrain"]["encoder"], "baseline", cfg["run"]["seeds"][0])
    assert embed[2] == f"{run}/model.ckpt" and export[2] == run
    audio = embed[3].rstrip("/")
    assert audio.rsplit("/", 1)[0] in task_dirs(cfg).values() and audio.endswith("/16000")
    out = embed[embed.index("--out") + 1]
    assert out.startswith("results/") and export[3].startswith("results/")  # git-ignored


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


def test_the_project_stands_alone():
    """Users have only this repository: no file points at a machine's paths, at material outside
    the repository or at the tracker's issue numbers (the thesis is cited by section and table)."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    pattern = re.compile(r"\.\./shared/|/work/(?:main|shared|wt)\b|\bissues? #?\d+\b", re.I)
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".smk", ".txt", ".toml", ".sh", ""}:
            continue
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
                  for m in pattern.finditer(text)]  # fmt: skip
    assert not found, "\n".join(found)
