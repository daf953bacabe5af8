"""The ``abt`` command as a user meets it: ``check-config`` runs the workflow's checks, and every
command the README shows works (run on tiny data)."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakedata import hear_task

ROOT = Path(__file__).resolve().parents[1]


def abt(*args, cwd=ROOT, timeout=900, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "abt.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_check_config_passes_the_shipped_configuration():
    r = abt("check-config")
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["pretrain"]["speed"]["prefetch_batches"] == 2  # defaults filled by the schema


@pytest.mark.parametrize(
    "override, key",
    [
        ({"pretrain": {"encoder": "audiontt2"}}, "pretrain.encoder"),
        ({"pretrain": {"optimizer": "larss"}}, "pretrain.optimizer"),
        ({"monitor": {"task": "embedded_envsound"}}, "monitor.task"),
        ({"encoders": {"audiontt": {"arch": "audiontt", "optimizer": "lars2"}}},
         "encoders.audiontt.optimizer"),
        ({"ablations": {"bs_33": {"pretrain": {"encoder": "vit_q"}}}}, "ablation 'bs_33'"),
        ({"run": {"encoders": ["audiontt", "resnet19"]}}, "run.encoders.1"),
    ],
)  # fmt: skip
def test_check_config_runs_the_workflows_cross_reference_checks(tmp_path, override, key):
    """Regression: check-config passed configurations the workflow rejects."""
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(override))
    r = abt("check-config", p)
    assert r.returncode == 2 and key in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_merges_override_files_like_snakemake(tmp_path):
    """config/paper.yaml holds only overrides: merged over config.yaml it is a full configuration
    (here its data paths do not exist, and the message names the key)."""
    r = abt("check-config", "config/paper.yaml")
    assert r.returncode == 2 and "data.pretrain.audio_dir" in r.stderr, r.stderr
    p = tmp_path / "scale.yaml"
    p.write_text(yaml.safe_dump({"pretrain": {"epochs": 7}}))
    r = abt("check-config", "--quiet", p)
    assert r.returncode == 0 and r.stdout == ""


def readme_commands() -> list[str]:
    """The shell commands of the README's code blocks that call abt by hand."""
    cmds, fenced = [], False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        line = line.split("  #")[0].strip()
        if fenced and re.match(r"^(abt |abt$|python -m abt|torchrun )", line):
            cmds.append(line)
    return cmds


@pytest.mark.slow
def test_every_hand_command_in_the_readme_works(tmp_path):
    cmds = readme_commands()
    assert len(cmds) >= 8, cmds
    emb, store, run = tmp_path / "data/embedded", tmp_path / "store", tmp_path / "run"
    tiny = tmp_path / "tiny.yaml"  # scale knobs only, for a 2-core CI box
    tiny.write_text(yaml.safe_dump({"pretrain": {"epochs": 2, "batch_size": 32},
                                    "finetune": {"epochs": 1}}))  # fmt: skip
    subs = {
        "data/embedded": str(emb),
        "clips.csv": str(emb / "pool/clips.csv"),
        "DIR": str(emb / "pool"),
        "STORE": str(store),
        "RUN_DIR": str(run),
        "encoders.csv": str(tmp_path / "encoders.csv"),
        ".venv-hear": str(ROOT / ".venv-hear"),
        "/data/hear2021": str(
            hear_task(tmp_path / "hear2021", "toy").parent
        ),  # a download's layout
        "data/hear-16k": str(tmp_path / "hear-16k"),
        "my_audio/": str(emb / "tasks"),  # "Use a model": a folder of audio files
        "embeddings/": str(tmp_path / "embeddings"),
        "exported/audiontt": str(tmp_path / "exported"),
        "TASK_DIR": str(emb / "tasks/embedded_envsounds-v1-full"),  # "Fine-tune a model"
        "STORES": str(tmp_path / "task-stores"),
        "finetune/envsounds.json": str(tmp_path / "finetune/envsounds.json"),
    }
    # what makes each command small enough here (appended; argparse takes the last value)
    smaller = {
        "build-embedded": ["--scale", "0.05", "--tasks", "embedded_envsounds"],
        "encoders": ["--repeats", "0", "--table", "3.1"],
        "pretrain": ["--device", "cpu"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    for line in cmds:
        line = re.sub(r"\[[^\]]*\]", "", line)  # optional arguments
        argv = [subs.get(w, w) for w in shlex.split(line)]
        argv = [w.replace("RUN_DIR", str(run)) for w in argv]
        if argv[0] == "torchrun":  # 2 CPU processes instead of 4 GPUs, the tiny scale knobs
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    *[("2" if a == "4" else a) for a in argv[1:]]]  # fmt: skip
            argv[argv.index("--config") + 1 : argv.index("--config") + 2] += [str(tiny)]
            argv += ["--device", "cpu", "--out", str(tmp_path / "ddp")]
        elif argv[0] == "abt":
            argv = [sys.executable, "-m", "abt.cli", *argv[1:]]
            if argv[3] in ("pretrain", "finetune"):
                argv += ["--config", str(tiny)]
            if argv[3] == "finetune":  # the task's stores, as the workflow computes them
                _task_stores(subs["TASK_DIR"], subs["STORES"])
            argv += smaller.get(argv[3], [])
        else:
            argv = [sys.executable, *argv[1:]]
        r = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=1800)  # fmt: skip
        if "check-config" in argv and "config/paper.yaml" in argv:
            # the paper's data is not on this machine: a clear error naming the key
            assert r.returncode == 2 and "data.pretrain.audio_dir" in r.stderr, r.stderr
            continue
        if "my-pkg==1.0" in argv:
            # the README's placeholder for the user's own package, not on any index: a clear
            # error naming the requirement, before any task runs
            assert r.returncode == 2 and "installing my-pkg==1.0 into the kit's venv failed" in (
                r.stderr
            ), r.stderr
            continue
        assert r.returncode == 0, f"{line}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert (store / "stats.json").is_file() and (run / "model.ckpt").is_file()
    assert (tmp_path / "ddp" / "model.ckpt").is_file() and (tmp_path / "encoders.csv").is_file()
    assert (tmp_path / "hear-16k" / "toy-v1-full" / "16000").is_dir()
    assert (tmp_path / "embeddings" / "index.csv").is_file()
    assert (tmp_path / "exported" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "finetune/envsounds.json").read_text())["epochs_run"] == 1


def _task_stores(task_dir: str, out: str) -> None:
    from abt.config import load_config
    from abt.jobs.data import compute_task_mels

    cfg = load_config(ROOT / "config.yaml")
    compute_task_mels(task_dir, cfg["mels"], cfg["preprocess"], out)


def one_line_error(r, *parts, whole_stderr=False):
    """A failure reported as one clear line naming what is wrong (exit 2, no traceback): the one
    line of stderr that says "error" holds every part (``whole_stderr``: stderr is that line)."""
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], err[-2000:])
    assert "Traceback" not in err, err
    lines = err.splitlines() if whole_stderr else [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and all(p in lines[0] for p in parts), err
    return lines[0]


@pytest.mark.parametrize(
    "text, parts",
    [
        ("pretrain:\n  batch_size: 8\npretrain:\n  epochs: 2\n",
         ["line 3: key 'pretrain' appears a second time", "first on line 1"]),
        ("mels:\n  f_min: 9000\n", ["f_min (9000) must be below f_max (7800)"]),
        ("mels:\n  n_fft: 512\n", ["win_length (1024) must be at most n_fft (512)"]),
        ("optimizers:\n  lars:\n    lr: .nan\n", ["'optimizers.lars.lr': nan is not a finite"]),
        ("pretrain:\n  objective:\n    lambd: .nan\n", ["'pretrain.objective.lambd': nan"]),
        ("studies:\n  lambda:\n    x: lambda\n", ["'studies.lambda.x': 'lambda' is not a column",
                                                   "did you mean lambd"]),
    ],
)  # fmt: skip
def test_check_config_refuses_what_the_schema_cannot_see(tmp_path, text, parts):
    p = tmp_path / "over.yaml"
    p.write_text(text)
    one_line_error(abt("check-config", p), *parts)


def test_prepare_hear_into_its_own_source_is_refused(tmp_path):
    """Regression: `abt prepare-hear SRC SRC` exited 0 and deleted the downloaded audio."""
    src = hear_task(tmp_path / "dl", "toy")
    wavs = sorted((src / "48000").rglob("*.wav"))
    one_line_error(abt("prepare-hear", tmp_path / "dl", tmp_path / "dl"),
                   "is the input download folder")  # fmt: skip
    assert sorted((src / "48000").rglob("*.wav")) == wavs and len(wavs) == 6
    one_line_error(abt("prepare-hear", tmp_path / "dl", tmp_path / "out", "--tasks", "nope"),
                   "no task ['nope']")  # fmt: skip


def test_compute_mels_into_the_audio_folder_is_refused(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    import soundfile as sf
    from fakedata import tone, write_clip_list

    sf.write(audio / "a.wav", tone(0.5, 16000), 16000)
    write_clip_list(audio / "index.csv", ["a"])
    before = (audio / "index.csv").read_bytes()
    r = abt("compute-mels", "--audio-dir", audio, "--clip-list", audio / "index.csv",
            "--out", audio)  # fmt: skip
    one_line_error(r, "is the input audio folder")
    assert (audio / "index.csv").read_bytes() == before


def test_build_embedded_scale_zero_is_an_argument_error(tmp_path):
    """Regression: `abt build-embedded --scale 0` ended in a ValueError traceback."""
    r = abt("build-embedded", "--out", tmp_path / "e", "--scale", "0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "argument --scale: must be a finite number > 0, not 0" in r.stderr
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("how", [["-m", "abt.cli", "hear"], ["-m", "abt.evaluation"]])
def test_evaluation_before_its_venv_exists_names_the_command_to_run(tmp_path, how):
    """Regression: the message named a Python function (ensure_env()), not the command.
    ``python -m abt.evaluation`` is ``abt hear``: one command line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, *how, "validate", str(tmp_path / "venv"),
                        str(tmp_path / "model.ckpt")], capture_output=True, text=True, env=env,
                       timeout=300)  # fmt: skip
    one_line_error(r, "is not a built evaluation venv", f"abt hear env {tmp_path / 'venv'}")
    assert r.stderr.startswith("abt hear validate: error: ")


def test_one_command_line_holds_every_command():
    """The HEAR steps and the sample rates are ``abt`` commands; the module entry points
    (``python -m abt.evaluation``, ``abt.evaluation.heareval_env``, ``abt.data.rates``) forward
    to them."""
    from abt.cli import COMMANDS
    from abt.evaluation.commands import HEAR_COMMANDS

    assert {"hear", "add-rates"} <= set(COMMANDS)
    assert set(HEAR_COMMANDS) == {"env", "random-init", "validate", "embed", "predict", "scores",
                                  "validate-reference"}  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "abt.cli", "hear", "--help"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                       timeout=300)  # fmt: skip
    assert r.returncode == 0 and all(c in r.stdout for c in HEAR_COMMANDS)
    for module, usage in (("abt.evaluation.heareval_env", "usage: abt hear env"),
                          ("abt.data.rates", "usage: abt add-rates")):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                           timeout=300)  # fmt: skip
        assert r.returncode == 0 and r.stdout.startswith(usage), (module, r.stdout[:200])


def test_encoders_out_does_not_overwrite_a_foreign_file(tmp_path):
    out = tmp_path / "notes.csv"
    out.write_text("name,phone\nada,123\n")
    r = abt("encoders", "--out", out, "--repeats", "0", "--table", "3.1")
    one_line_error(r, "notes.csv exists and is not a table of encoders written by abt")
    assert out.read_text() == "name,phone\nada,123\n"


# ---- abt pretrain on the paths a user gets wrong: one line each, what failed and what to do


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 32-clip store and a tiny configuration (3 epochs of 4 steps)."""
    from fakedata import tone_store

    d = tmp_path_factory.mktemp("pre")
    store = tone_store(d, 32, seed=0, seconds=(0.6, 1.6), noise=0.02, stats_crops=200)
    tiny = {"pretrain": {"epochs": 3, "batch_size": 8, "log_every": 2,
                         "projector": {"hidden_dims": [64], "out_dim": 32}}}  # fmt: skip
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    tiny["pretrain"]["batch_size"] = 64
    (d / "big_batch.yaml").write_text(yaml.safe_dump(tiny))
    return d, store


@pytest.mark.parametrize("n", ["0", "-1"])
def test_pretrain_refuses_to_stop_after_fewer_than_one_epoch(small, tmp_path, n):
    """Regression: --stop-after-epochs 0 and -1 trained one epoch."""
    d, store = small
    r = abt("pretrain", "--config", d / "tiny.yaml", "--store", store, "--out", tmp_path / "r",
            "--stop-after-epochs", n)  # fmt: skip
    assert r.returncode == 2 and f"must be at least 1 epoch, got {n}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["big_batch", "no_gpu", "out_is_a_file", "out_is_the_store"])
def test_pretrain_mistakes_are_one_line_errors(small, tmp_path, case):
    """Regression: a raw traceback for a batch larger than the store, --device cuda on a CPU
    build (or with no GPU visible) and an --out that is an existing file."""
    d, store = small
    out, cfg, extra = tmp_path / "r", d / "tiny.yaml", []
    if case == "big_batch":
        cfg = d / "big_batch.yaml"
        needles = [f"the pre-training store {store} has 32 clips, fewer than one batch of 64"]
    elif case == "no_gpu":
        extra = ["--device", "cuda"]
        needles = ["--device cuda: ", "use --device auto or cpu"]
    elif case == "out_is_a_file":
        out.write_text("my notes")
        needles = [f"{out} is an existing file, not a folder", "give a folder path"]
    else:
        out = store
        needles = [f"the output {store} is the input store (--store) ({store})"]
    env = {"CUDA_VISIBLE_DEVICES": ""}  # no GPU, also on a GPU machine
    r = abt("pretrain", "--config", cfg, "--store", store, "--out", out, *extra, env=env)
    one_line_error(r, *needles, whole_stderr=True)
    if case == "out_is_a_file":
        assert out.read_text() == "my notes"


def _can_mount_read_only() -> bool:
    probe = "mount -t tmpfs -o ro none /mnt 2>/dev/null || mount -t tmpfs -o ro none /tmp"
    r = subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(
    shutil.which("unshare") is None or not _can_mount_read_only(),
    reason="needs unshare -rm (a user and mount namespace) to mount a read-only file system",
)
def test_pretrain_on_a_read_only_file_system_is_a_one_line_error(small, tmp_path):
    d, store = small
    ro = tmp_path / "ro"
    ro.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    script = f'mount -t tmpfs -o ro none {shlex.quote(str(ro))} && exec "$@"'
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable, "-m",
                        "abt.cli", "pretrain", "--config", str(d / "tiny.yaml"), "--store",
                        str(store), "--out", str(ro / "run")], env=env, capture_output=True,
                       text=True, timeout=600)  # fmt: skip
    one_line_error(r, "Read-only file system: cannot write", str(ro / "run"), "writable",
                   whole_stderr=True)  # fmt: skip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_pretrain_on_a_full_disk_is_a_one_line_error(small, tmp_path):
    """Regression: ENOSPC while saving a checkpoint surfaced as torch's 'unexpected pos' inside
    a traceback and left the partial file. (/dev/full: every write fails with ENOSPC.)"""
    d, store = small
    run = tmp_path / "r"
    (run / "_staging").mkdir(parents=True)
    part = run / "_staging" / "last.ckpt.part"
    part.symlink_to("/dev/full")
    r = abt("pretrain", "--config", d / "tiny.yaml", "--store", store, "--out", run)
    one_line_error(r, "No space left on device: cannot write", str(run / "_staging/last.ckpt"),
                   whole_stderr=True)  # fmt: skip
    assert not os.path.lexists(part)


def test_ctrl_c_during_pretraining_is_one_line_and_the_run_resumes(small, tmp_path):
    """Regression: Ctrl-C printed a 20-line KeyboardInterrupt traceback. Now one line says what
    is kept and how to resume (the run is held after its first checkpoint: no timing race)."""
    from interrupt import hold_env, sigint_default, wait_held

    d, store = small
    run, held = tmp_path / "r", tmp_path / "held"
    cmd = [sys.executable, "-m", "abt.cli", "pretrain", "--config", str(d / "tiny.yaml"),
           "--store", str(store), "--out", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen(cmd, env={**env, **hold_env(held)}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)  # fmt: skip
    try:
        wait_held(held, p)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        p.kill()  # a failed wait leaves no held process behind
    assert p.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"abt pretrain: interrupted at epoch 2 of 3: the checkpoint of epoch 1 is kept in "
        f"{run / '_staging' / 'last.ckpt'}; run the same command again to resume from it"
    )
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "resumed from" in r.stdout + r.stderr, r.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["steps"] == 12


def test_every_help_text_renders():
    """Regression: a '%' in a command's help ("95 % interval") broke `abt --help` (argparse
    %-formats help texts)."""
    from abt.cli import COMMANDS, main

    for argv in (["--help"], *([name, "--help"] for name in COMMANDS.names())):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0, argv
