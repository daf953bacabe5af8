"""Measured references: the shipped HEAR baselines and a user's own HEAR module, validated before
any task runs (the kit parts are slow: they use the kit's venv, ``ABT_HEAR_VENV`` or .venv-hear)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hearmodules import GOOD, MODULES, make_wheel

from abt.config import ConfigError
from abt.data.hear_tasks import ClipRecord, TaskSpec, write_task
from abt.data.rates import add_rates
from abt.evaluation import heareval_env as he
from abt.evaluation import references as refs
from abt.evaluation.references import (
    REFERENCES,
    Reference,
    ReferenceError,
    check_pip,
    parse_references,
    validate_reference,
    validator_message,
)

# ------------------------------------------------------------------------------ configuration


def test_the_shipped_references():
    assert REFERENCES.names() == ["crepe", "naive"]
    naive, crepe = REFERENCES.get("naive"), REFERENCES.get("crepe")
    assert (naive.module, naive.sample_rate, naive.model, naive.pip) == (
        "hearbaseline.naive",
        44100,
        None,
        None,
    )
    assert (crepe.module, crepe.sample_rate) == ("hearbaseline.torchcrepe", 16000)
    assert crepe.row_label == "CREPE (measured here)"
    # their packages are pinned in the kit's venv, installed unmodified
    pins = he.read_constraints()
    assert (pins["hearbaseline"], pins["torchcrepe"]) == ("2021.1.1", "0.0.24")
    assert set(he.REFERENCE_NODEPS) == {"hearbaseline", "torchcrepe"}


def test_parse_references(tmp_path):
    wheel = tmp_path / "mine-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    got = parse_references([
        "naive",
        {"name": "mine", "module": "my_pkg.hear", "model": "w.pt", "pip": "my-pkg==1.2.0"},
        {"name": "wheel_one", "module": "m", "pip": str(wheel), "label": "W", "sample_rate": 48000},
    ])  # fmt: skip
    assert [r.name for r in got] == ["naive", "mine", "wheel_one"]
    assert got[1] == Reference("mine", "my_pkg.hear", "w.pt", "my-pkg==1.2.0", "mine", None)
    assert got[2].pip == str(wheel.absolute()) and got[2].row_label == "W (measured here)"
    assert refs.pip_requirements(got) == ["my-pkg==1.2.0", str(wheel.absolute())]
    assert parse_references(None) == []
    assert refs.task_rates(got) == [16000, 44100, 48000]
    assert refs.task_rates([REFERENCES.get("crepe")]) == [16000]


@pytest.mark.parametrize(
    "entry, message",
    [
        ("wav2vec2", r"hear.references\[0\]'.*unknown reference 'wav2vec2'; shipped: \['crepe'"),
        ({"module": "m"}, "'name' is required"),
        ({"name": "x"}, "'module' is required"),
        ({"name": "My-Model", "module": "m"}, "lower-case letters"),
        ({"name": "crepe", "module": "m"}, "'crepe' is a shipped reference"),
        ({"name": "x", "module": "my-pkg"}, "not an importable module name"),
        ({"name": "x", "module": "m", "weights": "w"}, r"unknown field\(s\) \['weights'\]"),
        ({"name": "x", "module": "m", "pip": "my-pkg>=1.0"}, "is not pinned exactly"),
        ({"name": "x", "module": "m", "pip": "my-pkg"}, "is not pinned exactly"),
        ({"name": "x", "module": "m", "pip": "my-pkg==1.*"}, "is not pinned exactly"),
        ({"name": "x", "module": "m", "pip": "/no/such.whl"}, "wheel file /no/such.whl does not"),
        ({"name": "x", "module": "m", "sample_rate": 8000}, "sample_rate must be one of"),
        ({"name": "x", "module": "m", "sample_rate": 16000.0}, "sample_rate must be one of"),
        (["naive"], "expected a reference name or a mapping"),
    ],
)
def test_bad_references_name_their_key(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_references([entry])


def test_a_reference_named_twice():
    with pytest.raises(ConfigError, match=r"\[1\]'.*'naive' is used twice"):
        parse_references(["naive", "naive"])


def test_check_pip():
    assert check_pip("my-pkg[extra]==2.0.1") == "my-pkg[extra]==2.0.1"
    assert check_pip(" my_pkg===1.0 ") == "my_pkg===1.0"
    for bad in ("my-pkg==1.0; python_version<'3.12'", "my-pkg @ https://x/y.whl", "a==1,<2"):
        with pytest.raises(ValueError, match="not pinned exactly"):
            check_pip(bad)


def test_the_venv_stamp_changes_with_the_references_and_a_users_module(tmp_path):
    """The stamp hashes the pins, the install commands and a wheel's bytes: another version of a
    reference (or a user's module) rebuilds the kit's venv; a reference without a pin is an
    error."""
    text = he.CONSTRAINTS.read_text()
    py = sys.executable
    base = he.env_hash(he.CONSTRAINTS, py)
    other = tmp_path / "c.txt"
    other.write_text(text.replace("torchcrepe==0.0.24", "torchcrepe==0.0.23"))
    assert he.env_hash(other, py) != base
    other.write_text(text.replace("hearbaseline==2021.1.1\n", ""))
    with pytest.raises(he.EnvBuildError, match="no pin for 'hearbaseline'"):
        he.env_hash(other, py)
    wheel = tmp_path / "mine-1.0-py3-none-any.whl"
    wheel.write_bytes(b"one")
    with_wheel = he.env_hash(he.CONSTRAINTS, py, [str(wheel)])
    assert len({base, with_wheel, he.env_hash(he.CONSTRAINTS, py, ["x==1"])}) == 3
    wheel.write_bytes(b"two")
    assert he.env_hash(he.CONSTRAINTS, py, [str(wheel)]) != with_wheel


def test_validator_message():
    out = (
        "Importing m\nChecking load_model\nTraceback (most recent call last):\n  File ...\n"
        "hearvalidator.validate.ModelError: Input sample rate of 8000 is invalid. Must be one of"
        " [16000, 22050, 32000, 44100, 48000]\n"
    )
    assert validator_message(out).startswith("hearvalidator.validate.ModelError: Input sample")
    assert validator_message("a\nModuleNotFoundError: No module named 'x'\n\n") == (
        "ModuleNotFoundError: No module named 'x'"
    )
    assert validator_message("") == "(no output)"


def test_a_failed_install_names_the_reference(monkeypatch, tmp_path):
    def fail(env_dir, extra=(), **kw):
        raise he.EnvBuildError(
            "building the HEAR evaluation venv failed (exit 1) at:\n  /v/bin/python -m pip install"
            f" --quiet -c C {extra[0]}\nlog: l\n--- last lines ---\nResolutionImpossible"
        )

    monkeypatch.setattr(he, "ensure_env", fail)
    mine = Reference("mine", "my_pkg.hear", pip="my-pkg==1.0")
    with pytest.raises(ReferenceError, match=r"reference 'mine' \(my_pkg.hear\): installing "
                       "my-pkg==1.0 into the kit's venv failed"):  # fmt: skip
        refs.ensure_reference_env(tmp_path, [REFERENCES.get("naive"), mine])


SPEC = TaskSpec("tiny", "scene", "multiclass", "trainvaltest", ("train", "valid", "test"), 1.0,
                ("top1_acc", "mAP"), ("low", "high"))  # fmt: skip


def _tiny_task(root, n=4):
    t = np.arange(16000) / 16000
    clips = [ClipRecord(s, f"{s}-{i}.wav",
                        (0.3 * np.sin(2 * np.pi * (300 if i % 2 else 3000) * t)).astype(np.float32),
                        ["low" if i % 2 else "high"])
             for s in SPEC.splits for i in range(n)]  # fmt: skip
    return write_task(root, SPEC, clips)


def test_a_task_without_the_models_rate_is_a_clear_error(tmp_path):
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    (env / he.STAMP_NAME).write_text("{}")
    task = _tiny_task(tmp_path / "tasks")
    with pytest.raises(he.MissingRateError) as ei:
        refs.reference_embeddings(env, REFERENCES.get("naive"), [task], tmp_path / "emb",
                                  sample_rate=44100)  # fmt: skip
    msg = str(ei.value)
    assert "no 44100/ audio folder (it has [16000]); hearbaseline.naive declares" in msg
    assert f"abt add-rates {task} --rate 44100" in msg


# ------------------------------------------------------------------------ the kit (slow)


@pytest.fixture(scope="module")
def env_dir():
    path = Path(os.environ.get("ABT_HEAR_VENV", he.REPO_ROOT / ".venv-hear"))
    return he.ensure_env(path)


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """The tiny modules importable in the kit's processes (as if pip-installed there)."""
    d = tmp_path / "site"
    d.mkdir()
    for m, src in MODULES.items():
        (d / f"{m}.py").write_text(src)
    real = he.kit_env

    def kit_env(*a, **kw):
        env = real(*a, **kw)
        env["PYTHONPATH"] += os.pathsep + str(d)
        return env

    monkeypatch.setattr(he, "kit_env", kit_env)
    return d


@pytest.mark.slow
def test_the_shipped_references_pass_the_validator(env_dir, tmp_path):
    for name, rate, size in (("naive", 44100, 4096), ("crepe", 16000, 2048)):
        c = validate_reference(env_dir, REFERENCES.get(name), log=tmp_path / f"{name}.log")
        assert (c.sample_rate, c.scene_embedding_size, c.timestamp_embedding_size) == (
            rate,
            size,
            size,
        )
        assert "Looks good!" in c.validator_tail and c.probe["n_timestamps"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, message",
    [
        ("byo_noimport", "module 'byo_noimport' does not import: ModuleNotFoundError: No module "
                         "named 'no_such_package_for_abt_tests'"),
        ("byo_badrate", "module 'byo_badrate' fails hear-validator: hearvalidator.validate."
                        "ModelError: Input sample rate of 8000 is invalid"),
        ("byo_floatrate", "module 'byo_floatrate' returns wrong embeddings: model.sample_rate is "
                          "16000.0; the kit reads <task>/<sample_rate>/"),
        ("byo_nan", "module 'byo_nan' returns wrong embeddings: scene embeddings holds 6 "
                    "non-finite values"),
        ("byo_missing", "module 'byo_missing' does not import: ModuleNotFoundError"),
    ],
)  # fmt: skip
def test_a_users_module_that_cannot_be_evaluated_is_named_before_any_task(
    env_dir, user_modules, module, message
):
    with pytest.raises(ReferenceError) as ei:
        validate_reference(env_dir, Reference(f"r_{module}", module))
    assert str(ei.value).startswith(f"reference 'r_{module}': ")
    assert message in str(ei.value)


@pytest.mark.slow
def test_a_users_module_and_the_naive_baseline_through_the_kit(env_dir, user_modules, tmp_path):
    """A user's module (16 kHz) and the naive baseline (44.1 kHz: the task gets that rate
    first) through the official embeddings and predictions runners."""
    task = _tiny_task(tmp_path / "tasks")
    mine = Reference("mine", "byo_good", model=None)
    assert validate_reference(env_dir, mine).sample_rate == 16000
    naive = REFERENCES.get("naive")
    add_rates(task, [naive.sample_rate], log=lambda _m: None)
    for ref, rate in ((mine, 16000), (naive, 44100)):
        outs = refs.reference_embeddings(env_dir, ref, [task], tmp_path / "emb", sample_rate=rate)
        emb = outs[task.name]
        assert emb == tmp_path / "emb" / ref.module / task.name
        dims = json.loads((emb / "train.embedding-dimensions.json").read_text())
        assert dims == [4, {"mine": 3, "naive": 4096}[ref.name]]
        scores = he.run_predictions(env_dir, emb, "smoke", out_dir=tmp_path / "pred" / ref.name)
        data = json.loads(scores.read_text())
        assert 0.0 <= data["test"]["test_top1_acc"] <= 1.0


@pytest.mark.slow
def test_a_users_wheel_resolves_against_the_kits_pins(env_dir, tmp_path):
    """What ensure_env(extra=[wheel]) runs, as a dry run: the wheel installs with the kit's
    constraints; a pin that moves a constrained package is refused by pip."""
    wheel = make_wheel(tmp_path, {"byo_good": GOOD})
    cmd = he._install_plan(he.CONSTRAINTS, [str(wheel)])[-1]
    py = str(he.env_python(env_dir))
    r = subprocess.run([py, "-m", "pip", cmd[0], "--dry-run", *cmd[1:]], capture_output=True,
                       text=True, env=he.kit_env(env_dir))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Would install abt_test_modules-1.0" in r.stdout.replace(
        "abt-test-modules", "abt_test_modules"
    )
    moves_a_pin = ["install", "--dry-run", "-c", str(he.CONSTRAINTS), "numpy==2.3.0"]
    r = subprocess.run([py, "-m", "pip", *moves_a_pin], capture_output=True, text=True,
                       env=he.kit_env(env_dir))  # fmt: skip
    assert r.returncode != 0


def test_the_command_line_names_what_is_wrong(tmp_path, capsys):
    from abt.evaluation.__main__ import main

    assert main(["validate-reference", str(tmp_path / "nope"), "naive"]) == 2
    assert "is not a built evaluation venv" in capsys.readouterr().err
    assert main(["validate-reference", str(tmp_path), "naive", "--module", "m"]) == 2
    assert "NAME or --module (not both)" in capsys.readouterr().err
    assert main(["validate-reference", str(tmp_path), "wav2vec2"]) == 2
    assert "'validate-reference[0]': unknown reference 'wav2vec2'" in capsys.readouterr().err
    assert main(["validate-reference", str(tmp_path), "--module", "m", "--pip", "m>=1"]) == 2
    assert "is not pinned exactly" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_line_validates_a_users_module(env_dir, user_modules, tmp_path, capsys):
    from abt.evaluation.__main__ import main

    out = tmp_path / "ref.json"
    assert (
        main(["validate-reference", str(env_dir), "--module", "byo_good", "--out", str(out)]) == 0
    )
    got = json.loads(out.read_text())
    assert (got["module"], got["sample_rate"], got["scene_embedding_size"]) == (
        "byo_good",
        16000,
        3,
    )


def test_a_reference_round_trips_through_its_configuration_entry(tmp_path):
    """What the workflow hands a job (``Reference.to_entry``) parses back to the same
    reference: a shipped one by its name, a user's by its fields."""
    from abt.evaluation.references import parse_references

    mine = {"name": "mine", "module": "my_pkg.hear", "model": str(tmp_path / "w.pt"),
            "sample_rate": 32000}  # fmt: skip
    refs = parse_references(["naive", "crepe", mine])
    assert [r.to_entry() for r in refs][:2] == ["naive", "crepe"]
    assert parse_references([r.to_entry() for r in refs]) == refs
