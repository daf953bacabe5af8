"""HEAR API module (abt.hear), kit env helpers and score collection — fast unit tests.

The real kit (hear-validator, both runners) runs in tests/test_heareval_kit.py (slow).
"""

import json
import math
import os
import subprocess
import sys

import defaults
import numpy as np
import pytest
import torch
import yaml

from abt import hear
from abt.checkpoint import save_sealed
from abt.data.mel import LogMelFrontEnd
from abt.evaluation import heareval_env as he
from abt.evaluation.scores import ScoresError, collect_scores, scores_table
from abt.hear import (
    CheckpointError,
    get_scene_embeddings,
    get_timestamp_embeddings,
    load_model,
)

SR = 16000
MEAN, STD = -6.0, 4.5
# reduced widths/depth keep these tests fast; full-size encoders run in test_heareval_kit.py
CONV_KW = {"channels": 16, "hidden_dim": 128}  # embed_dim 16 * 16 + 128 = 384
VIT_KW = {"patch_size": [16, 8], "depth": 2}  # ViT_C-T width 192


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    return {
        "conv": defaults.random_init(
            d / "ntt.ckpt", "audiontt", "audiontt", CONV_KW, MEAN, STD, {}
        ),
        "vit": defaults.random_init(d / "vit.ckpt", "vitc_t_16x8", "vitc_t", VIT_KW, MEAN, STD, {}),
    }


@pytest.fixture(scope="module")
def models(ckpts):
    return {k: load_model(str(p)) for k, p in ckpts.items()}


def noise(n, samples, seed=0, amp=0.1):
    g = torch.Generator().manual_seed(seed)
    return amp * torch.randn(n, samples, generator=g)


def manual_logmel(wave):
    x = LogMelFrontEnd(defaults.mels())(wave)
    return ((x - MEAN) / STD).transpose(1, 2).unsqueeze(1)


# --------------------------------------------------------------------------- checkpoints


def test_encoder_parameters_elsewhere_than_the_probe_input(ckpts):
    """Regression (GPU): HearModel around an encoder on CUDA failed with 'the encoder rejects
    every input length up to 128 frames' because the length probe fed a CPU float32 tensor and a
    broad except hid the device error. Here the parameters are float64 instead of on a GPU: the
    probe must use the encoder's own device and dtype, and embeddings must match."""
    ref = load_model(str(ckpts["conv"]))
    enc = hear.build_checkpoint_encoder(hear.read_checkpoint(ckpts["conv"])).double()
    model = hear.HearModel(enc, defaults.mels(), MEAN, STD)
    assert model.min_frames == ref.min_frames == 4
    audio = noise(2, SR)
    torch.testing.assert_close(model.scene(audio), ref.scene(audio), rtol=1e-4, atol=1e-5)


def test_unexpected_encoder_errors_are_not_turned_into_a_length_error():
    class Broken(torch.nn.Module):
        embed_dim, unit_frames = 8, None

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, mask_ratio=0.0):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        hear.HearModel(Broken(), defaults.mels(), MEAN, STD)


def test_format_constant_matches_trainer():
    from abt.checkpoint import ENCODER_CKPT_FORMAT

    assert hear.ENCODER_CKPT_FORMAT == ENCODER_CKPT_FORMAT


def test_random_init_is_seeded_and_loadable_by_the_trainer_loader(ckpts, tmp_path):
    from abt.checkpoint import load_encoder

    enc, ck = load_encoder(ckpts["vit"])
    assert ck["config"] == {"random_init": True, "seed": 0} and ck["epoch"] == 0
    assert ck["norm"] == {"mode": "dataset", "mean": MEAN, "std": STD}
    again = defaults.random_init(
        tmp_path / "a.ckpt", "vitc_t_16x8", "vitc_t", VIT_KW, MEAN, STD, {}
    )
    other = defaults.random_init(
        tmp_path / "b.ckpt", "vitc_t_16x8", "vitc_t", VIT_KW, MEAN, STD, {}, seed=1
    )
    sd0 = enc.state_dict()
    sd1 = torch.load(again, weights_only=True)["state_dict"]
    sd2 = torch.load(other, weights_only=True)["state_dict"]
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    assert not all(torch.equal(sd0[k], sd2[k]) for k in sd0)


def test_trainer_checkpoint_loads(tmp_path):
    import soundfile as sf

    from abt.config import REPO_ROOT, load_config
    from abt.data.store import ClipSpec, build_store
    from abt.runspec import resolve as resolve_run_config
    from abt.trainer import Trainer

    rng = np.random.default_rng(0)
    specs = []
    for i in range(8):
        x = 0.1 * rng.standard_normal(16000).astype(np.float32)
        sf.write(tmp_path / f"{i}.wav", x, SR)
        specs.append(ClipSpec(str(i), str(tmp_path / f"{i}.wav")))
    build_store(specs, tmp_path / "store", defaults.store_settings(20), log=lambda *_: None)
    cfg = resolve_run_config(
        load_config(REPO_ROOT / "config.yaml"), overrides={"batch_size": 4, "epochs": 1}
    )
    tr = Trainer(cfg, tmp_path / "store", tmp_path / "run", progress=False, log=lambda *_: None)
    tr.save_encoder(tmp_path / "model.ckpt")
    m = load_model(str(tmp_path / "model.ckpt"))
    assert m.norm_mean == pytest.approx(tr.store.mean) and m.norm_std == pytest.approx(tr.store.std)
    emb = get_scene_embeddings(noise(2, 8000), m)
    assert emb.shape == (2, m.scene_embedding_size) and torch.isfinite(emb).all()


def test_bad_checkpoints_raise_clear_errors(ckpts, tmp_path):
    with pytest.raises(ValueError, match="needs the path"):
        load_model()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "missing.ckpt"))
    # a bare state dict (another library's checkpoint)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="expected format 'abt-encoder/1'"):
        load_model(str(tmp_path / "sd.pt"))
    # a pickled class (Lightning-style hparams): refused by weights_only=True
    torch.save({"hyper_parameters": {"act": torch.nn.ReLU}}, tmp_path / "pl.ckpt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(str(tmp_path / "pl.ckpt"))
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not an abt encoder checkpoint"):
        load_model(str(tmp_path / "garbage.ckpt"))
    ck = torch.load(ckpts["conv"], weights_only=True)
    # weights of one encoder declared as another architecture
    save_sealed(
        tmp_path / "m.ckpt", {**ck, "encoder": {"key": "x", "arch": "vitc_t", "kwargs": {}}}
    )
    with pytest.raises(CheckpointError, match="does not match architecture 'vitc_t'"):
        load_model(str(tmp_path / "m.ckpt"))
    save_sealed(tmp_path / "u.ckpt", {**ck, "encoder": {"key": "x", "arch": "nope", "kwargs": {}}})
    with pytest.raises(CheckpointError, match="unknown encoder architecture 'nope'"):
        load_model(str(tmp_path / "u.ckpt"))
    save_sealed(tmp_path / "n.ckpt", {**ck, "norm": {"mode": "dataset", "mean": 0.0, "std": 0.0}})
    with pytest.raises(CheckpointError, match="std > 0"):
        load_model(str(tmp_path / "n.ckpt"))
    bad = {**ck, "state_dict": {**ck["state_dict"]}}
    bad["state_dict"].pop(next(iter(bad["state_dict"])))
    save_sealed(tmp_path / "k.ckpt", bad)
    with pytest.raises(CheckpointError, match="missing"):
        load_model(str(tmp_path / "k.ckpt"))
    with pytest.raises(TypeError, match="unknown option"):
        load_model(str(ckpts["conv"]), batch=3)


# ------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("kind,dim", [("conv", 384), ("vit", 192)])
def test_api_attributes_and_shapes(models, kind, dim):
    m = models[kind]
    assert isinstance(m, torch.nn.Module) and not m.training
    assert m.sample_rate == 16000
    assert isinstance(m.scene_embedding_size, int) and m.scene_embedding_size == dim
    assert isinstance(m.timestamp_embedding_size, int) and m.timestamp_embedding_size == dim
    names = dict(m.named_buffers())
    assert "frontend.fb" in names and "frontend.window" in names  # moved by .to(device)
    assert any(n.startswith("encoder.") for n, _ in m.named_parameters())
    s = get_scene_embeddings(noise(3, 24000), m)
    assert s.shape == (3, dim) and s.dtype == torch.float32
    e, ts = get_timestamp_embeddings(noise(3, 16000), m)
    assert e.shape == (3, 21, dim) and ts.shape == (3, 21) and e.dtype == torch.float32


@pytest.mark.parametrize(
    "seconds,n_frames,last_ms",
    [
        (2.0, 41, 2000.0),
        (1.07, 22, 1050.0),
        (1.98, 40, 1950.0),
        (4.0, 81, 4000.0),
        (0.0, 1, 0.0),
        (0.01, 1, 0.0),
    ],
)
def test_timestamps_hand_computed(models, seconds, n_frames, last_ms):
    n = int(round(seconds * SR))
    _, ts = get_timestamp_embeddings(noise(2, n), models["conv"])
    assert ts.shape == (2, n_frames)
    expected = torch.arange(n_frames, dtype=torch.float32) * 50.0
    assert torch.equal(ts[0], expected) and torch.equal(ts[1], expected)
    assert ts[0, -1].item() == last_ms <= seconds * 1000.0 + 1e-6


def test_timestamp_frame_is_a_centred_950ms_window(models):
    m = models["conv"]
    audio = noise(1, 2 * SR, seed=3)
    e, ts = get_timestamp_embeddings(audio, m)
    k = 20  # centred at 1000 ms: samples 16000 +- 7600
    assert ts[0, k].item() == 1000.0
    with torch.no_grad():
        ref = m.encoder(manual_logmel(audio[:, 16000 - 7600 : 16000 + 7600]))
    assert manual_logmel(audio[:, :15200]).shape[-1] == 96
    torch.testing.assert_close(e[0, k], ref[0], rtol=1e-4, atol=1e-4)
    # frame 0 is centred at 0 ms: half a frame of zeros, then the first 475 ms
    padded = torch.cat([torch.zeros(1, 7600), audio[:, :7600]], dim=1)
    with torch.no_grad():
        ref0 = m.encoder(manual_logmel(padded))
    torch.testing.assert_close(e[0, 0], ref0[0], rtol=1e-4, atol=1e-4)


def test_conv_scene_is_the_encoder_on_the_whole_normalised_clip(models):
    m = models["conv"]
    audio = noise(2, 3 * SR + 123, seed=1)
    with torch.no_grad():
        ref = m.encoder(manual_logmel(audio))
    torch.testing.assert_close(get_scene_embeddings(audio, m), ref, rtol=1e-5, atol=1e-5)


def test_vit_units_no_all_zero_unit(models):
    m = models["vit"]
    n = 191 * 160  # exactly 192 frames = 2 full units -> 2 units, no padding unit
    audio = noise(1, n, seed=2)
    x = manual_logmel(audio)
    assert x.shape[-1] == 192
    with torch.no_grad():
        units = m.encoder(torch.cat([x[..., :96], x[..., 96:]], dim=0))
        zero = m.encoder(torch.zeros(1, 1, 64, 96))
    got = get_scene_embeddings(audio, m)
    torch.testing.assert_close(got[0], units.mean(0), rtol=1e-5, atol=1e-5)
    wrong = torch.cat([units, zero]).mean(0)  # the authors' always-pad bug
    assert not torch.allclose(got[0], wrong, atol=1e-3)


def test_vit_partial_unit_padded_with_silence(models):
    m = models["vit"]
    audio = noise(1, 199 * 160, seed=4)  # 200 frames: 2 full units + 8 frames
    x = manual_logmel(audio)
    silence = (math.log(defaults.mels().log_eps) - MEAN) / STD
    assert m.silence == pytest.approx(silence)
    last = torch.full((1, 1, 64, 96), silence)
    last[..., :8] = x[..., 192:]
    with torch.no_grad():
        ref = m.encoder(torch.cat([x[..., :96], x[..., 96:192], last])).mean(0)
    torch.testing.assert_close(get_scene_embeddings(audio, m)[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["conv", "vit"])
def test_embedding_does_not_depend_on_the_batch(models, kind):
    m = models[kind]
    a = noise(1, SR, seed=5, amp=0.01)
    loud = noise(3, SR, seed=6, amp=0.9)
    s1 = get_scene_embeddings(a, m)
    s2 = get_scene_embeddings(torch.cat([loud[:1], a, loud[1:]]), m)
    torch.testing.assert_close(s2[1], s1[0], rtol=1e-5, atol=1e-5)
    e1, _ = get_timestamp_embeddings(a, m)
    e2, _ = get_timestamp_embeddings(torch.cat([a, loud]), m)
    torch.testing.assert_close(e2[0], e1[0], rtol=1e-5, atol=1e-5)


def test_normalisation_uses_checkpoint_statistics(ckpts, models, tmp_path):
    ck = torch.load(ckpts["conv"], weights_only=True)
    save_sealed(tmp_path / "o.ckpt", {**ck, "norm": {"mode": "dataset", "mean": 0.0, "std": 1.0}})
    other = load_model(str(tmp_path / "o.ckpt"))
    audio = noise(1, SR, seed=7)
    assert not torch.allclose(
        get_scene_embeddings(audio, other), get_scene_embeddings(audio, models["conv"])
    )


@pytest.mark.parametrize("kind", ["conv", "vit"])
@pytest.mark.parametrize("n_samples", [0, 1, 100, 600, 1024, 15199, 2 * SR])
def test_silent_and_short_clips_are_finite(models, kind, n_samples):
    m = models[kind]
    for audio in (torch.zeros(2, n_samples), noise(2, n_samples, seed=8)):
        s = get_scene_embeddings(audio, m)
        e, ts = get_timestamp_embeddings(audio, m)
        assert s.shape == (2, m.scene_embedding_size) and torch.isfinite(s).all()
        assert e.shape[:2] == ts.shape == (2, 1 + n_samples // 800)
        assert torch.isfinite(e).all()


def test_short_conv_clip_is_padded_with_silence(models):
    m = models["conv"]
    audio = noise(1, 300, seed=9)
    padded = torch.nn.functional.pad(audio, (0, 1024 - 300))
    with torch.no_grad():
        ref = m.encoder(manual_logmel(padded))
    torch.testing.assert_close(get_scene_embeddings(audio, m), ref, rtol=1e-5, atol=1e-5)


def test_eval_mode_is_enforced_and_deterministic(models):
    m = models["conv"]
    audio = noise(1, SR, seed=10)
    a = get_scene_embeddings(audio, m)
    m.train()
    try:
        b = get_scene_embeddings(audio, m)  # dropout must stay off
    finally:
        m.eval()
    torch.testing.assert_close(a, b)


def test_bad_audio_is_a_clear_error(models):
    m = models["conv"]
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        get_scene_embeddings(torch.zeros(SR), m)
    with pytest.raises(ValueError, match="NaN or Inf"):
        get_timestamp_embeddings(torch.full((1, SR), float("nan")), m)
    with pytest.raises(TypeError, match="load_model"):
        get_scene_embeddings(torch.zeros(1, SR), torch.nn.Linear(1, 1))


def test_chunking_does_not_change_results(ckpts, models):
    small = load_model(str(ckpts["vit"]), chunk_size=3)
    audio = noise(2, 2 * SR, seed=11)
    torch.testing.assert_close(
        get_scene_embeddings(audio, small),
        get_scene_embeddings(audio, models["vit"]),
        rtol=1e-5,
        atol=1e-5,
    )
    e1, _ = get_timestamp_embeddings(audio, small)
    e2, _ = get_timestamp_embeddings(audio, models["vit"])
    torch.testing.assert_close(e1, e2, rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------- kit env helpers


def test_constraints_pins():
    pins = he.read_constraints()
    assert pins["heareval"] == "2021.1.3" and pins["hearvalidator"] == "2021.0.6"
    assert pins["pytorch-lightning"] == "1.9.5"
    major = int(pins["setuptools"].split(".")[0])
    assert 77 <= major < 81  # dcase_util / lightning import pkg_resources (gone in 81)
    for name in he.KIT_REQUIREMENTS:
        assert he._norm(name) in pins
    # torch / numpy equal to the main environment's pins
    pyproject = (he.REPO_ROOT / "pyproject.toml").read_text()
    for name in ("torch", "numpy"):
        assert f'"{name}=={pins[name]}"' in pyproject
    plan = he._install_plan(he.CONSTRAINTS)
    assert plan[1][:2] == ["install", "--no-deps"] and plan[1][-1] == "heareval==2021.1.3"
    assert "--ignore-requires-python" in plan[2] and plan[2][-1] == "hearvalidator==2021.0.6"
    # the measured references, unmodified from PyPI, after the kit and without their metadata's
    # dependencies (numpy 1.19, tensorflow, a torchaudio for another torch)
    assert plan[3][:2] == ["install", "--no-deps"]
    assert plan[3][-2:] == ["hearbaseline==2021.1.1", "torchcrepe==0.0.24"]
    assert len(plan) == 4
    extra = he._install_plan(he.CONSTRAINTS, ["my-hear-module==1.0"])
    assert extra[:4] == plan and extra[4] == [
        "install",
        "-c",
        str(he.CONSTRAINTS),
        "my-hear-module==1.0",
    ]


def test_conda_env_matches_constraints():
    env = yaml.safe_load((he.REPO_ROOT / "envs" / "hear.yaml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # the one option line: the index of the named CPU build of torch (envs/hear.yaml)
    assert [p for p in pip if p.startswith("-")] == [
        "--extra-index-url https://download.pytorch.org/whl/cpu"
    ]
    pins = he.read_constraints()
    got = {he._norm(p.split("==")[0]): p.split("==")[1] for p in pip if not p.startswith("-")}
    # installed with --no-deps by envs/hear.post-deploy.sh: the kit and the references' packages
    post_deploy = ("heareval", "hearvalidator", *he.REFERENCE_NODEPS)
    want = {k: v for k, v in pins.items() if k not in post_deploy}
    assert got == {**want, "torch": want["torch"] + "+cpu"}


def test_kit_env(tmp_path):
    env = he.kit_env(tmp_path / "venv", base={"PATH": "/usr/bin", "PYTHONPATH": "/x"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(he.SHIM_DIR), str(he.SRC_DIR)]
    assert env["PATH"].startswith(str(tmp_path / "venv" / "bin"))
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert (he.SHIM_DIR / "sitecustomize.py").is_file()
    assert (he.SHIM_DIR / "tensorflow" / "__init__.py").is_file()


def test_shims_in_a_subprocess(tmp_path):
    """tensorflow stub + post-import pynvml patch, without pytorch-lightning installed."""
    (tmp_path / "pynvml.py").write_text(
        "def nvmlDeviceGetName(handle):\n    return 'NVIDIA Fake'\n"
    )
    code = (
        "import sys, torch, tensorflow as tf, hear_compat, pynvml\n"
        "assert 'hear_compat' in sys.modules and tf.ABT_STUB\n"
        "assert not isinstance(torch.nn.Linear(1, 1), tf.Module)\n"
        "assert tf.test.is_gpu_available()\n"
        "try:\n    tf.convert_to_tensor(1)\n"
        "except RuntimeError as e:\n    assert 'stub' in str(e)\n"
        "else:\n    raise SystemExit('no error')\n"
        "for fn in (tf.zeros, tf.random.uniform, tf.math.reduce_sum):\n"
        "    try:\n        fn(1)\n"
        "    except RuntimeError as e:\n        assert 'only PyTorch HEAR modules' in str(e)\n"
        "    else:\n        raise SystemExit(f'no error from {fn}')\n"
        "assert not hasattr(tf, '__wrapped__') and not hasattr(tf.random, '__wrapped__')\n"
        "assert pynvml.nvmlDeviceGetName(0) == b'NVIDIA Fake', pynvml.nvmlDeviceGetName(0)\n"
        "assert 'pynvml.nvmlDeviceGetName' in hear_compat.PATCHED\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(he.SHIM_DIR), str(tmp_path)])}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_shims_for_the_references_in_a_subprocess(tmp_path):
    """hearbaseline's librosa-0.8 call mel(44100, ...) gives librosa's own filters; torchcrepe's
    `import torchaudio` finds the stand-in only when no torchaudio is installed."""
    code = (
        "import sys, hear_compat, librosa, numpy as np, torchaudio\n"
        "a = librosa.filters.mel(44100, n_fft=4096, n_mels=256)\n"
        "assert 'librosa.filters.mel' in hear_compat.PATCHED\n"
        "assert np.array_equal(a, librosa.filters.mel(sr=44100, n_fft=4096, n_mels=256))\n"
        "assert a.shape == (256, 2049)\n"
        "print(getattr(torchaudio, 'ABT_STUB', False))\n"
        "for fn in (torchaudio.load, torchaudio.transforms):\n"
        "    try:\n        fn('x.wav')\n"
        "    except RuntimeError as e:\n        assert 'stand-in' in str(e)\n"
        "    else:\n        raise SystemExit(f'no error from {fn}')\n"
        "assert not hasattr(torchaudio, '__wrapped__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(he.SHIM_DIR)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    # an installed torchaudio wins over the stand-in
    (tmp_path / "torchaudio").mkdir()
    (tmp_path / "torchaudio" / "__init__.py").write_text("REAL = True\n")
    env["PYTHONPATH"] = os.pathsep.join([str(he.SHIM_DIR), str(tmp_path)])
    code = "import torchaudio; assert torchaudio.REAL and not hasattr(torchaudio, 'ABT_STUB')"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unbuilt_env_and_bad_inputs_are_clear_errors(ckpts, tmp_path):
    with pytest.raises(he.EnvBuildError, match="build it first with `abt hear env"):
        he.run_validator(tmp_path / "nope", ckpts["conv"])
    with pytest.raises(ValueError, match="grid must be one of"):
        he.run_predictions(tmp_path / "nope", tmp_path, grid="quick")
    # ensure_env never deletes a folder that is not a venv
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "precious.txt").write_text("x")
    with pytest.raises(he.EnvBuildError, match="refusing"):
        he.ensure_env(stranger)
    assert (stranger / "precious.txt").exists()


def _fake_env(tmp_path):
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    (env / he.STAMP_NAME).write_text("{}")
    return env


def test_run_embeddings_validates_tasks_before_launching(ckpts, tmp_path):
    from abt.data.hear_tasks import ClipRecord, HearTaskError, TaskSpec, write_task

    env = _fake_env(tmp_path)
    spec = TaskSpec(
        "t",
        "scene",
        "multiclass",
        "trainvaltest",
        ("train", "valid", "test"),
        1.0,
        ("top1_acc",),
        ("a", "b"),
    )
    clips = [
        ClipRecord(s, f"{s}{i}.wav", np.zeros(SR, np.float32), ["ab"[i % 2]])
        for s in ("train", "valid", "test")
        for i in range(2)
    ]
    tasks = tmp_path / "tasks"
    tdir = write_task(tasks, spec, clips)
    (tdir / "valid.json").unlink()
    with pytest.raises(HearTaskError, match="valid.json"):
        he.run_embeddings(env, ckpts["conv"], tasks, tmp_path / "emb")
    (tdir / "valid.json").write_text("{not json")
    with pytest.raises(HearTaskError, match="not valid JSON"):
        he.run_embeddings(env, ckpts["conv"], tasks, tmp_path / "emb")
    with pytest.raises(HearTaskError, match="does not exist"):
        he.run_embeddings(env, ckpts["conv"], tasks, tmp_path / "emb", task="missing-v1-full")
    torch.save({"a": 1}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError):
        he.run_embeddings(env, tmp_path / "other.ckpt", tasks, tmp_path / "emb")
    with pytest.raises(FileNotFoundError, match="not a finished embedding task dir"):
        he.run_predictions(env, tdir, grid="smoke")


# ------------------------------------------------------------------------------------ scores


def _write_scores(d, data, evaluation):
    d.mkdir(parents=True, exist_ok=True)
    (d / "task_metadata.json").write_text(json.dumps({"evaluation": evaluation}))
    (d / "test.predicted-scores.json").write_text(json.dumps(data))  # writes Infinity / NaN


def test_collect_scores_trainvaltest(tmp_path):
    data = {
        "test": {
            "test_top1_acc": 0.75,
            "test_mAP": 0.8,
            "test_d_prime": math.inf,
            "test_aucroc": math.nan,
            "test_score": 0.75,
            "test_loss": 0.3,
            "validation_score": 0.7,
            "epoch": 12,
            "time_in_min": 0.1,
        },
        "hparams": {"lr": 1e-3},
        "postprocessing": None,
        "score_mode": "max",
    }
    _write_scores(tmp_path, data, ["top1_acc", "mAP", "d_prime", "aucroc"])
    assert "Infinity" in (tmp_path / "test.predicted-scores.json").read_text()
    rows = collect_scores(
        tmp_path, task="t", encoder="audiontt", variant="base", seed=0, grid="smoke"
    )
    df = scores_table(rows)
    assert list(df.columns) == [
        "task",
        "encoder",
        "variant",
        "seed",
        "grid",
        "grid_points",
        "split",
        "metric",
        "value",
        "primary",
    ]
    assert df["grid_points"].isna().all()  # a folder without the runner's record
    test = df[df.split == "test"].set_index("metric")["value"]
    assert test["top1_acc"] == 0.75 and math.isinf(test["d_prime"]) and math.isnan(test["aucroc"])
    assert set(test.index) == {
        "top1_acc",
        "mAP",
        "d_prime",
        "aucroc",
        "loss",
        "validation_score",
        "epoch",
    }
    prim = df[df.primary]
    assert set(prim.metric) == {"top1_acc"} and set(prim.split) == {"test", "mean"}
    assert (
        df[df.split == "mean"].value.fillna(-1).values
        == df[df.split == "test"].value.fillna(-1).values
    ).all()


def test_collect_scores_kfold(tmp_path):
    folds = {
        f"fold{i:02d}": {
            "test_top1_acc": 0.5 + 0.1 * i,
            "test_score": 0.5 + 0.1 * i,
            "test_loss": 1.0,
            "validation_score": 0.5,
            "epoch": 3,
        }
        for i in range(3)
    }
    agg = {
        "test_top1_acc_mean": 0.6,
        "test_top1_acc_std": 0.1,
        "test_score_mean": 0.6,
        "test_score_std": 0.1,
        "test_loss_mean": 1.0,
        "test_loss_std": 0.0,
        "validation_score_mean": 0.5,
        "validation_score_std": math.nan,
    }
    _write_scores(tmp_path, {**folds, "aggregated_scores": agg}, ["top1_acc"])
    df = scores_table(
        collect_scores(tmp_path, task="k", encoder="e", variant="v", seed=1, grid="default")
    )
    assert set(df.split) == {"fold00", "fold01", "fold02", "mean", "std"}
    mean = df[(df.split == "mean") & df.primary]
    assert len(mean) == 1 and mean.value.item() == pytest.approx(0.6)
    assert "score" not in set(df.metric)


def test_collect_scores_records_the_runners_grid_and_refuses_another(tmp_path):
    """The rows carry the grid and grid points the runner recorded next to the scores; a
    folder predicted on another grid than the one asked for is stale, and an error."""
    from abt.evaluation.heareval_env import PREDICTION_SETTINGS

    _write_scores(tmp_path, {"test": {"test_top1_acc": 0.5, "test_score": 0.5}}, ["top1_acc"])
    (tmp_path / PREDICTION_SETTINGS).write_text(json.dumps({"grid": "fast", "grid_points": 3}))
    df = scores_table(
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="fast")
    )
    assert (df["grid"] == "fast").all() and (df["grid_points"] == 3).all()
    with pytest.raises(ScoresError, match="made on the 'fast' grid.*not on the 'default'"):
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="default")
    (tmp_path / PREDICTION_SETTINGS).write_text("[1]")
    with pytest.raises(ScoresError, match="expected a JSON object; re-run the predictions"):
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="fast")


def test_collect_scores_errors(tmp_path):
    with pytest.raises(ScoresError, match="does not exist"):
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="smoke")
    (tmp_path / "test.predicted-scores.json").write_text("{broken")
    with pytest.raises(ScoresError, match="not valid JSON"):
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="smoke")
    (tmp_path / "test.predicted-scores.json").write_text('{"hparams": {}}')
    with pytest.raises(ScoresError, match="no per-split"):
        collect_scores(tmp_path, task="t", encoder="e", variant="v", seed=0, grid="smoke")


def test_cli_random_init_and_scores(tmp_path):
    from abt.evaluation.__main__ import main

    ck = tmp_path / "r" / "model.ckpt"
    main(
        [
            "random-init",
            str(ck),
            "--encoder",
            "vitc_t_16x8",
            "--arch",
            "vitc_t",
            "--kwargs",
            json.dumps(VIT_KW),
            "--mean",
            "-5",
            "--std",
            "5",
            "--seed",
            "3",
        ]
    )
    m = load_model(str(ck))
    assert m.info["encoder"]["key"] == "vitc_t_16x8" and m.norm_mean == -5.0
    data = {"test": {"test_top1_acc": 0.5, "test_score": 0.5, "test_loss": 1.0}}
    _write_scores(tmp_path / "emb", data, ["top1_acc"])
    out = tmp_path / "scores.csv"
    main(
        [
            "scores",
            str(tmp_path / "emb"),
            str(out),
            "--task",
            "t",
            "--encoder",
            "e",
            "--variant",
            "v",
            "--seed",
            "0",
            "--grid",
            "fast",
        ]
    )
    import pandas as pd

    df = pd.read_csv(out)
    assert df[df.primary].value.tolist() == [0.5, 0.5]


def test_kit_failure_reports_the_tail(tmp_path):
    env = _fake_env(tmp_path)
    code = "import sys; [print('line', i) for i in range(100)]; print('boom'); sys.exit(3)"
    with pytest.raises(he.KitError, match=r"(?s)exit 3.*line 99\nboom"):
        he._run_kit([sys.executable, "-c", code], env, cwd=tmp_path, log=None, what="x")
    assert "line 0\n" in (tmp_path / "kit.log").read_text()
