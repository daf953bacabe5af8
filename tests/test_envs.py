"""Conda environments: they parse, every package is pinned exactly, every pin has a record of
existing on its channel (envs/pins-evidence.tsv), the pins agree with pyproject.toml (or are a
listed exception, envs/pyproject-exceptions.tsv) and with the HEAR venv's constraints, GPU and CPU
rules name different envs with named pytorch builds, and a pin file, when present, agrees with its
env file."""

import csv
import fnmatch
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
PLATFORM = "linux-64"
#: conda-forge name -> pip name, where they differ
CONDA_TO_PIP = {"pytorch": "torch", "pysoundfile": "soundfile", "soxr-python": "soxr",
                "pretty_midi": "pretty-midi", "matplotlib-base": "matplotlib",
                "seaborn-base": "seaborn"}  # fmt: skip
#: the only pip option line an env may carry: the index of the named CPU build of torch
PIP_OPTIONS = {"--extra-index-url https://download.pytorch.org/whl/cpu": "pytorch-cpu"}
CONDA_PIN = re.compile(r"([A-Za-z0-9_.\-]+)=([^=\s]+)(?:=(\S+))?")
FEEDSTOCK_COMMIT = re.compile(r"conda-forge/[A-Za-z0-9_.\-]+-feedstock@[0-9a-f]{40}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_tsv(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def _pyproject_pins() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        deps += extra
    pins = {}
    for d in deps:
        name, _, version = d.partition("==")
        assert version, f"pyproject.toml: {d!r} is not pinned exactly"
        pins[_norm(name.split("[")[0])] = version
    return pins


def _conda_pins(path: Path) -> dict[str, tuple[str, str | None]]:
    """{conda name: (version, build glob or None)} of one env file's conda dependencies."""
    out = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            continue
        m = CONDA_PIN.fullmatch(dep)
        assert m, f"{path.name}: conda entry {dep!r} is not pinned as name=version[=build]"
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def _pip_pins(path: Path) -> tuple[dict[str, str], list[str]]:
    """({normalised pip name: version}, option lines) of an env file's `pip:` section and of its
    post-deploy script's `pip install` lines."""
    pins, options = {}, []
    lines = []
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            lines += dep["pip"]
    for line in lines:
        if line.startswith("-"):
            options.append(line)
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: pip entry {line!r} is not pinned with =="
        pins[_norm(name)] = version
    for name, version in _post_deploy_pins(path).items():
        pins[name] = version
    return pins, options


def _post_deploy_pins(path: Path) -> dict[str, str]:
    script = path.with_suffix(".post-deploy.sh")
    if not script.exists():
        return {}
    pins = {}
    for line in script.read_text().splitlines():
        if line.strip().startswith("pip install"):
            # requirements are the arguments that are not options or an option's value
            toks = line.split()[2:]
            for prev, tok in zip(["--"] + toks, toks, strict=False):
                if tok.startswith("-") or prev in ("--only-binary", "--no-binary"):
                    continue
                name, sep, version = tok.partition("==")
                assert sep, f"{script.name}: {tok!r} is not pinned with =="
                pins[_norm(name)] = version
    return pins


def _pip_name(conda_name: str) -> str:
    return _norm(CONDA_TO_PIP.get(conda_name, conda_name))


def _evidence() -> list[dict[str, str]]:
    return _read_tsv(ROOT / "envs/pins-evidence.tsv")


# ----------------------------------------------------------------------------- the env files


def test_there_is_one_env_per_stage_and_device():
    assert {p.stem for p in ENVS} == {"audio", "torch-cpu", "torch-gpu", "hear", "report"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_parses_is_pinned_and_uses_conda_forge_only(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert _conda_pins(path)["python"] == ("3.11", None)
    _, options = _pip_pins(path)
    assert set(options) <= set(PIP_OPTIONS), f"{path.name}: pip options {options}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_every_pin_has_evidence_of_existing_on_its_channel(path):
    """A pin (conda, pip section or post-deploy script) without a row in envs/pins-evidence.tsv
    fails: bumping a version means recording where the new one exists."""
    have = {(r["channel"], r["package"], r["version"]) for r in _evidence()}
    missing = [
        f"conda-forge {name}={version}"
        for name, (version, _) in _conda_pins(path).items()
        if ("conda-forge", name, version) not in have
    ]
    pins, options = _pip_pins(path)
    rows = {(c, _norm(p), v) for c, p, v in have}
    for name, version in pins.items():
        channel = "pypi"
        if "+" in version:  # a local build label: from the index the env names
            assert [PIP_OPTIONS[o] for o in options] == ["pytorch-cpu"], (path.name, name)
            channel = "pytorch-cpu"
        if (channel, name, version) not in rows:
            missing.append(f"{channel} {name}=={version}")
    assert not missing, f"{path.name}: no record in envs/pins-evidence.tsv for {missing}"


def test_evidence_rows_are_well_formed():
    rows = _evidence()
    keys = [(r["channel"], r["package"], r["version"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    for r in rows:
        what = f"{r['package']}={r['version']} ({r['channel']})"
        assert r["channel"] in {"conda-forge", "pypi", "pytorch-cpu"}, what
        assert r["version"] and r["evidence"], what
        if r["channel"] != "conda-forge":
            continue
        assert r["subdir"] in {"linux-64", "noarch"}, what
        assert r["python"] == ("noarch" if r["subdir"] == "noarch" else "py311"), what
        if r["evidence"].startswith("https://"):
            # a channel page of this package on conda-forge
            page = re.fullmatch(r"https://anaconda\.org/conda-forge/([^/]+)/.*", r["evidence"])
            assert page and page.group(1) == r["package"], what
        else:
            # the feedstock commit that set the version, and its date
            assert FEEDSTOCK_COMMIT.fullmatch(r["evidence"]), what
            assert DATE.fullmatch(r["date"]), what


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject_or_are_a_listed_exception(path):
    """Equal to pyproject.toml's exact pin, or (conda pins only) an older version listed in
    envs/pyproject-exceptions.tsv with its reason. A local build label (torch 2.13.0+cpu) is a
    build, not a version: its public version must be equal."""
    pyproject = _pyproject_pins()
    exceptions = {_norm(r["package"]): r for r in _read_tsv(ROOT / "envs/pyproject-exceptions.tsv")}
    bad = []
    for conda_name, (version, _) in _conda_pins(path).items():
        name = _pip_name(conda_name)
        if name not in pyproject or version == pyproject[name]:
            continue
        ex = exceptions.get(name)
        if not (ex and ex["pyproject"] == pyproject[name] and ex["envs"] == version):
            bad.append(f"{conda_name}={version} but pyproject.toml pins {pyproject[name]}")
    for name, version in _pip_pins(path)[0].items():
        if name in pyproject and Version(version).public != pyproject[name]:
            bad.append(f"{name}=={version} (pip) but pyproject.toml pins {pyproject[name]}")
    assert not bad, f"{path.name}: {bad}"


def test_pyproject_exceptions_are_older_explained_and_in_use():
    pyproject = _pyproject_pins()
    used = {
        (_pip_name(n), v) for p in ENVS for n, (v, _) in _conda_pins(p).items()
    }  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    for r in _read_tsv(ROOT / "envs/pyproject-exceptions.tsv"):
        name = _norm(r["package"])
        assert pyproject[name] == r["pyproject"], f"{name}: pyproject.toml moved on"
        assert Version(r["envs"]) < Version(r["pyproject"]), name
        assert len(r["reason"]) > 20, name
        assert (name, r["envs"]) in used, f"{name} {r['envs']}: no env pins it any more"
        assert f"{r['package']} {r['envs']}" in readme, f"README does not list {name}"


def test_hear_env_equals_the_hear_venv_constraints():
    cons = {}
    for line in (ROOT / "envs/hear-eval.constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            cons[_norm(name)] = version
    pins, _ = _pip_pins(ROOT / "envs/hear.yaml")
    for name, version in cons.items():
        if name in ("heareval", "hearvalidator"):  # --no-deps, in hear.post-deploy.sh
            assert pins.get(name) == version, name
        elif name == "torch":  # the named CPU build: nothing in this env uses a GPU
            assert pins[name] == version + "+cpu"
        else:
            assert pins.get(name) == version, name
    assert set(pins) == set(cons)


# ----------------------------------------------------------------- builds, rules, dependencies


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_every_pytorch_names_its_build(path):
    """GPU envs hold the CUDA build, every other env the CPU build, named explicitly (the solver's
    choice would depend on the machine that creates the env)."""
    conda = _conda_pins(path)
    pip, _ = _pip_pins(path)
    if "pytorch" in conda:
        build = conda["pytorch"][1]
        assert build, f"{path.name}: pytorch without a build string"
        want = "cuda129_*" if path.stem.endswith("-gpu") else "cpu_*"
        assert build == want, f"{path.name}: pytorch build {build!r}, want {want!r}"
    else:
        assert pip["torch"].endswith("+cpu"), path.name


def test_torch_envs_differ_only_in_the_pytorch_build():
    cpu, gpu = (_conda_pins(ROOT / f"envs/torch-{d}.yaml") for d in ("cpu", "gpu"))
    assert cpu["pytorch"][0] == gpu["pytorch"][0]
    assert {**cpu, "pytorch": None} == {**gpu, "pytorch": None}
    scripts = [(ROOT / f"envs/torch-{d}.post-deploy.sh").read_text() for d in ("cpu", "gpu")]
    assert scripts[0] == scripts[1]


def _rules() -> list[tuple[str, str, bool]]:
    """(rule name, env file, asks for a GPU) of every rule that names an env."""
    out = []
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        blocks = re.split(r"(?m)^(?=rule \w+:|    rule:)", smk.read_text())
        for b in blocks:
            env = re.search(r'^\s+conda:\s*\n\s+"([^"]+)"', b, flags=re.M)
            if not env:
                continue
            name = re.match(r"rule (\w+):", b) or re.search(r"name:\s*\n\s*(\S+)", b)
            gpu = re.search(r"^\s+gpu=", b, flags=re.M) is not None
            out.append((name.group(1), Path(env.group(1)).name, gpu))
    return out


def test_gpu_and_cpu_rules_name_different_envs():
    """Rules that ask for a GPU run in torch-gpu.yaml (the CUDA build), or in hear.yaml, whose
    rules start the HEAR kit in its own venv (the kit's torch is the one on the GPU); no CPU rule
    downloads a CUDA build."""
    rules = _rules()
    for name, env, gpu in rules:
        if gpu:
            assert env in ("torch-gpu.yaml", "hear.yaml"), f"GPU rule {name} runs in {env}"
        else:
            assert not env.endswith("-gpu.yaml"), f"CPU rule {name} runs in {env}"
    by_env = {(env, gpu) for _, env, gpu in rules}
    assert ("torch-gpu.yaml", True) in by_env and ("torch-cpu.yaml", False) in by_env
    gpu_rules = {n for n, _, g in rules if g}
    assert {"pretrain_encoder", "sweep_worker", "linear_eval"} <= gpu_rules


@pytest.mark.parametrize("env", ["audio", "torch-cpu", "torch-gpu"])
def test_pypi_packages_have_their_dependencies_in_conda(env):
    """A post-deploy script installs its PyPI packages with --no-deps (wheels only): every
    dependency they declare must be a conda pin of the env that satisfies it, so the conda env
    is complete without them."""
    script = (ROOT / f"envs/{env}.post-deploy.sh").read_text()
    assert "--no-deps" in script and "--only-binary :all:" in script
    conda = {_pip_name(n): v for n, (v, _) in _conda_pins(ROOT / f"envs/{env}.yaml").items()}
    conda = {n: v.split("=")[0] for n, v in conda.items()}  # pytorch=2.13.0=cpu_*: the version
    for name, version in _post_deploy_pins(ROOT / f"envs/{env}.yaml").items():
        assert importlib.metadata.version(name) == version, name  # the project venv's copy
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue  # an optional extra
            dep = _norm(req.name)
            assert dep in conda, f"{name} needs {spec}; {env}.yaml has no {dep}"
            assert req.specifier.contains(conda[dep], prereleases=True), (name, spec)


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
    report = {_pip_name(n) for n in _conda_pins(ROOT / "envs/report.yaml")}
    for need in ("torch", "pandas", "seaborn", "jinja2", "optuna", "soundfile", "soxr", "pyyaml"):
        assert need in report, need
    for device in ("cpu", "gpu"):
        torch_env = {_pip_name(n) for n in _conda_pins(ROOT / f"envs/torch-{device}.yaml")}
        for need in ("torch", "optuna", "soundfile", "soxr", "pandas", "scikit-learn"):
            assert need in torch_env, need
        # the waveform augmentations' resampler, from PyPI after the env is created
        assert "julius" in _post_deploy_pins(ROOT / f"envs/torch-{device}.yaml")
    audio = set(_conda_pins(ROOT / "envs/audio.yaml")) | set(_pip_pins(ROOT / "envs/audio.yaml")[0])
    for need in ("librosa", "pytorch", "pretty-midi", "midirenderer", "espeakng-loader"):
        assert need in audio, need


def test_readme_states_snakemakes_conda_requirement():
    from snakemake.deployment.conda import MIN_CONDA_VER

    assert f"conda {MIN_CONDA_VER} or newer" in (ROOT / "README.md").read_text()


# ------------------------------------------------------------------------------ pin files


def pin_file_problems(env_path: Path, pin_path: Path) -> list[str]:
    """What makes an explicit pin file (`conda list --explicit --md5`) disagree with its env
    file: wrong platform, a channel other than conda-forge, a package twice, a conda pin of the
    env missing or at another version or build. [] = they agree."""
    problems = []
    lines = [ln.strip() for ln in pin_path.read_text().splitlines() if ln.strip()]
    if f"# platform: {PLATFORM}" not in lines:
        problems.append(f"no '# platform: {PLATFORM}' line")
    if "@EXPLICIT" not in lines:
        problems.append("no @EXPLICIT line")
    got: dict[str, tuple[str, str]] = {}
    for ln in lines:
        if ln.startswith(("#", "@")):
            continue
        m = re.fullmatch(
            r"https://conda\.anaconda\.org/([^/]+)/([^/]+)/([^/#]+)\.(?:conda|tar\.bz2)"
            r"#(?:[0-9a-f]{32}|sha256:[0-9a-f]{64})",
            ln,
        )
        if not m:
            problems.append(f"not a conda-forge package URL with a checksum: {ln}")
            continue
        channel, subdir, filename = m.groups()
        if channel != "conda-forge" or subdir not in (PLATFORM, "noarch"):
            problems.append(f"{filename}: from {channel}/{subdir}")
        name, version, build = filename.rsplit("-", 2)
        if name in got:
            problems.append(f"{name} twice")
        got[name] = (version, build)
    for name, (version, build) in _conda_pins(env_path).items():
        if name not in got:
            problems.append(f"{name}: pinned in {env_path.name}, absent from the pin file")
            continue
        v, b = got[name]
        if not (v == version or v.startswith(version + ".")):  # conda's name=version is a prefix
            problems.append(f"{name}: {v} in the pin file, {version} in {env_path.name}")
        if build and not fnmatch.fnmatchcase(b, build):
            problems.append(f"{name}: build {b} in the pin file, {build} in {env_path.name}")
    return problems


def _has_pip_section(env_path: Path) -> bool:
    return any(isinstance(d, dict) for d in yaml.safe_load(env_path.read_text())["dependencies"])


def test_pin_files_agree_with_their_env_files():
    """Each envs/<env>.linux-64.pin.txt that exists agrees with envs/<env>.yaml. An env with a
    `pip:` section has none: Snakemake creates an env from its pin file alone, which cannot hold
    pip packages, so they would be silently missing."""
    for pin in sorted((ROOT / "envs").glob("*.pin.txt")):
        env = pin.with_name(pin.name.replace(f".{PLATFORM}.pin.txt", ".yaml"))
        assert pin.name.endswith(f".{PLATFORM}.pin.txt") and env.is_file(), pin.name
        assert not _has_pip_section(env), f"{env.name} has a pip: section and a pin file"
        assert pin_file_problems(env, pin) == [], pin.name


SYNTHETIC_ENV = """\
name: t
channels: [conda-forge, nodefaults]
dependencies:
  - python=3.11
  - numpy=2.4.6
  - pytorch=2.13.0=cuda129_*
"""
CF = "https://conda.anaconda.org/conda-forge"
SYNTHETIC_PIN = f"""\
# This file may be used to create an environment using:
# $ conda create --name <env> --file <this file>
# platform: linux-64
@EXPLICIT
{CF}/linux-64/python-3.11.15-hd63d673_0_cpython.conda#0123456789abcdef0123456789abcdef
{CF}/linux-64/numpy-2.4.6-py311h2e04523_0.conda#0123456789abcdef0123456789abcdef
{CF}/linux-64/pytorch-2.13.0-cuda129_generic_py311_h1234567_202.conda#0123456789abcdef0123456789abcdef
{CF}/noarch/sympy-1.14.0-pyh2585a3b_106.conda#0123456789abcdef0123456789abcdef
"""


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda s: s, None),
        (lambda s: s.replace("numpy-2.4.6", "numpy-2.4.5"), "numpy: 2.4.5 in the pin file"),
        (lambda s: s.replace("cuda129_generic", "cpu_generic"), "pytorch: build cpu_generic"),
        (lambda s: s.replace("platform: linux-64", "platform: osx-arm64"), "no '# platform"),
        (lambda s: s.replace("conda-forge/noarch/sympy", "bioconda/noarch/sympy"), "from bioconda"),
        (lambda s: "\n".join(ln for ln in s.splitlines() if "/numpy-" not in ln), "absent"),
        (lambda s: s.replace("#0123456789abcdef0123456789abcdef\n", "\n", 1), "checksum"),
        (lambda s: s + s.splitlines()[-1] + "\n", "sympy twice"),
    ],
    ids=["agrees", "version", "build", "platform", "channel", "missing", "no-md5", "twice"],
)
def test_pin_file_check_on_a_synthetic_pin_file(tmp_path, edit, problem):
    env = tmp_path / "t.yaml"
    env.write_text(SYNTHETIC_ENV)
    pin = tmp_path / f"t.{PLATFORM}.pin.txt"
    pin.write_text(edit(SYNTHETIC_PIN))
    found = pin_file_problems(env, pin)
    if problem is None:
        assert found == []
    else:
        assert any(problem in p for p in found), found
