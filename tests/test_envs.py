"""Conda environments: they parse, every package is pinned exactly, the pins agree with
pyproject.toml (and the HEAR venv's constraints), and every rule names an env file that exists."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
#: conda-forge name -> pip name, where they differ
CONDA_TO_PIP = {"pytorch": "torch", "pysoundfile": "soundfile", "soxr-python": "soxr",
                "pretty_midi": "pretty-midi"}  # fmt: skip


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]
    pins = {}
    for d in deps:
        name, _, version = d.partition("==")
        assert version, f"pyproject.toml: {d!r} is not pinned exactly"
        pins[_norm(name)] = version
    return pins


def _env_pins(path: Path) -> dict[str, tuple[str, str]]:
    """{normalised pip name: (version, 'conda'|'pip')} of one env file."""
    env = yaml.safe_load(path.read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                name, sep, version = line.partition("==")
                assert sep, f"{path.name}: pip entry {line!r} is not pinned with =="
                out[_norm(name)] = (version, "pip")
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)=([^=\s]+)", dep)
        assert m, f"{path.name}: conda entry {dep!r} is not pinned as name=version"
        name = CONDA_TO_PIP.get(m.group(1), m.group(1))
        out[_norm(name)] = (m.group(2), "conda")
    return out


def test_there_is_one_env_per_stage():
    assert {p.stem for p in ENVS} == {"audio", "torch", "hear", "report"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_parses_is_pinned_and_uses_conda_forge_only(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins = _env_pins(path)
    assert pins["python"][0] == "3.11"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path):
    pyproject = _pyproject_pins()
    for name, (version, _) in _env_pins(path).items():
        if name in pyproject:
            assert version == pyproject[name], (
                f"{path.name}: {name}={version} but pyproject.toml pins {pyproject[name]}"
            )


def test_hear_env_equals_the_hear_venv_constraints():
    cons = {}
    for line in (ROOT / "envs/hear-eval.constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            cons[_norm(name)] = version
    pins = _env_pins(ROOT / "envs/hear.yaml")
    for name, version in cons.items():
        if name in ("heareval", "hearvalidator"):  # --no-deps, in hear.post-deploy.sh
            text = (ROOT / "envs/hear.post-deploy.sh").read_text()
            assert f"{name}=={version}" in text
            continue
        assert pins.get(name, (None,))[0] == version, name


def test_every_rule_names_an_existing_env():
    rules = sorted((ROOT / "workflow/rules").glob("*.smk"))
    seen = 0
    for smk in rules:
        text = smk.read_text()
        # named rules, and rules defined in a loop (`rule:` + `name:`)
        n_rules = len(re.findall(r"^\s*rule( \w+)?:", text, flags=re.M))
        envs = re.findall(r'^\s+conda:\s*\n\s+"([^"]+)"', text, flags=re.M)
        # every rule that runs code names an env (the aggregate "paper" and "data" rules run
        # nothing)
        n_code = n_rules - len(re.findall(r"^rule (paper|data):", text, flags=re.M))
        assert len(envs) == n_code, f"{smk.name}: {n_code} rules run code, {len(envs)} name an env"
        for e in envs:
            assert (smk.parent / e).resolve().is_file(), f"{smk.name}: {e} does not exist"
        seen += len(envs)
    assert seen >= 20


def test_env_stage_covers_the_imports_of_its_rules():
    """The report env can import what the report rules import (torch, audio IO, optuna)."""
    report = _env_pins(ROOT / "envs/report.yaml")
    for need in ("torch", "pandas", "seaborn", "jinja2", "optuna", "soundfile", "soxr", "pyyaml"):
        assert need in report, need
    torch_env = _env_pins(ROOT / "envs/torch.yaml")
    for need in ("torch", "optuna", "soundfile", "soxr", "pandas", "scikit-learn"):
        assert need in torch_env, need
