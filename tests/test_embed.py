"""``abt embed`` and the device choice: embeddings of audio files and folders with a trained
encoder, exactly as the HEAR module computes them, every input accounted for in the index."""

import csv
import re
from pathlib import Path

import defaults
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from fakedata import tiny_run

from abt import devices
from abt.cli import main as abt
from abt.embed import EmbedError, collect_inputs, load_wave
from abt.hear import get_scene_embeddings, get_timestamp_embeddings, load_model

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(tmp_path_factory.mktemp("proj"))


@pytest.fixture(scope="module")
def model(run):
    return load_model(str(run / "model.ckpt"))


def noise(n, seed, ch=1):
    x = 0.1 * np.random.default_rng(seed).standard_normal((n, ch)).astype(np.float32)
    return x[:, 0] if ch == 1 else x


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Two files named x.wav in different folders (one 44.1 kHz stereo), a FLAC of the same
    length as a/x.wav, a silent file, and the bad inputs a user's folder holds."""
    d = tmp_path_factory.mktemp("audio")
    (d / "a").mkdir()
    (d / "b").mkdir()
    sf.write(d / "a" / "x.wav", noise(SR, 0), SR)
    sf.write(d / "b" / "x.wav", noise(44100, 1, ch=2), 44100)
    sf.write(d / "c.flac", noise(SR, 2), SR)
    sf.write(d / "c.wav", noise(24000, 3), SR)  # same stem as c.flac
    sf.write(d / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(d / "short.wav", noise(400, 4), SR)  # 25 ms: under one 64 ms window
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (d / "notes.txt").write_text("not audio")
    return d


def index(out):
    with open(Path(out) / "index.csv", newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def rows_by_name(out, base):
    return {Path(k).relative_to(base).as_posix(): v for k, v in index(out).items()}


# ------------------------------------------------------------------------------ embed


def test_scene_embeddings_of_a_folder_every_file_accounted_for(run, model, audio, tmp_path, capsys):
    out = tmp_path / "emb"
    assert abt(["embed", str(run / "model.ckpt"), str(audio), "--out", str(out)]) == 0
    rows = rows_by_name(out, audio)
    status = {k: r["status"] for k, r in rows.items()}
    assert status == {
        "a/x.wav": "ok",
        "b/x.wav": "ok",
        "c.flac": "ok",
        "c.wav": "ok",
        "silent.wav": "ok",
        "short.wav": "too_short",
        "empty.wav": "empty",
        "broken.wav": "unreadable",
        "notes.txt": "not_audio",
    }
    assert rows["short.wav"]["reason"] == "25.0 ms is shorter than min_duration_s=0.064"
    assert rows["broken.wav"]["reason"].startswith("soundfile could not read it")
    assert rows["notes.txt"]["embedding"] == rows["broken.wav"]["embedding"] == ""
    # names mirror the tree and keep the file name: no collision of a/x.wav, b/x.wav, c.*
    assert rows["a/x.wav"]["embedding"] == "a/x.wav.npy"
    assert rows["b/x.wav"]["embedding"] == "b/x.wav.npy"
    assert {rows["c.flac"]["embedding"], rows["c.wav"]["embedding"]} == {"c.flac.npy", "c.wav.npy"}
    assert rows["b/x.wav"]["notes"] == "downmixed 2ch->mono; resampled 44100->16000"
    assert rows["b/x.wav"]["sample_rate"] == "44100" and rows["b/x.wav"]["channels"] == "2"
    assert float(rows["c.wav"]["duration_s"]) == 1.5
    # the reference: the file decoded by hand (mean of channels, soxr HQ) through the HEAR API
    data, sr = sf.read(audio / "b" / "x.wav", dtype="float32", always_2d=True)
    wave = soxr.resample(data.mean(axis=1), sr, SR, quality="HQ").astype(np.float32)
    ref = get_scene_embeddings(torch.from_numpy(wave)[None], model)[0].numpy()
    got = np.load(out / "b" / "x.wav.npy")
    assert got.shape == (model.scene_embedding_size,) and got.dtype == np.float32
    # files of one length are embedded in one batch; on some CPUs the batched kernels round
    # differently from this one-clip reference (oneDNN picks its algorithm by batch size), so
    # the comparison allows float32 rounding; --batch 1 below is bit for bit
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    ref = get_scene_embeddings(
        torch.from_numpy(sf.read(audio / "c.wav", dtype="float32")[0])[None], model
    )[0].numpy()
    np.testing.assert_allclose(np.load(out / "c.wav.npy"), ref, rtol=1e-5, atol=1e-6)
    one = tmp_path / "one"
    assert abt(["embed", str(run / "model.ckpt"), str(audio / "c.wav"), "--out", str(one),
                "--batch", "1"]) == 0  # fmt: skip
    np.testing.assert_array_equal(np.load(one / "c.wav.npy"), ref)
    assert np.isfinite(np.load(out / "silent.wav.npy")).all()
    err = capsys.readouterr().err
    assert "embedded 5 of 8 audio files" in err and "1 unreadable" in err and "not_audio" in err


def test_timestamp_embeddings_and_their_times(run, model, audio, tmp_path):
    out = tmp_path / "ts"
    assert (
        abt(
            [
                "embed",
                str(run / "model.ckpt"),
                str(audio / "c.wav"),
                str(audio / "a"),
                "--out",
                str(out),
                "--timestamps",
            ]
        )
        == 0
    )
    wave = torch.from_numpy(sf.read(audio / "c.wav", dtype="float32")[0])[None]
    emb, ts = get_timestamp_embeddings(wave, model)
    got, times = np.load(out / "c.wav.npy"), np.load(out / "c.wav.times.npy")
    n = 1 + 24000 // 800  # 950 ms frames every 50 ms: 31 frames over 1.5 s
    assert got.shape == (n, model.timestamp_embedding_size) and times.shape == (n,)
    np.testing.assert_array_equal(times, 50.0 * np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(got, emb[0].numpy())
    np.testing.assert_array_equal(ts[0].numpy(), times)
    # two inputs: names relative to the folder holding both
    row = rows_by_name(out, audio)["a/x.wav"]
    assert (row["embedding"], row["times"]) == ("a/x.wav.npy", "a/x.wav.times.npy")


@pytest.mark.parametrize("kind", ["conv", "vit"])
def test_batches_equal_one_file_at_a_time(run, tmp_path, kind):
    """Files of equal and of different lengths, in batches of 4 and one by one: the same
    embeddings (equal lengths are batched together, different lengths never padded to each
    other: padding would move them far beyond rounding). Bit for bit one by one, as the HEAR
    API's one-clip pass; a batch may round differently in float32 on CPUs whose kernels
    depend on the batch size (seen on an AMD EPYC)."""
    if kind == "vit":
        ckpt = defaults.random_init(
            tmp_path / "vit.ckpt",
            "vitc_t_16x8",
            "vitc_t",
            {"patch_size": [16, 8], "depth": 2},
            -6.0,
            4.5,
            {},
        )
    else:
        ckpt = run / "model.ckpt"
    d = tmp_path / "mix"
    d.mkdir()
    for i, n in enumerate([SR, SR, 20000, SR, 20000, 12345, SR]):
        sf.write(d / f"{i}.wav", noise(n, 10 + i), SR)
    for b in ("1", "4"):
        assert abt(["embed", str(ckpt), str(d), "--out", str(tmp_path / b), "--batch", b]) == 0
    for i in range(7):
        one, four = (
            np.load(tmp_path / "1" / f"{i}.wav.npy"),
            np.load(tmp_path / "4" / f"{i}.wav.npy"),
        )
        np.testing.assert_allclose(one, four, rtol=1e-5, atol=1e-6)
    model = load_model(str(ckpt))
    for i in (0, 5):
        ref = get_scene_embeddings(load_wave(d / f"{i}.wav", model)[None], model)[0].numpy()
        np.testing.assert_array_equal(np.load(tmp_path / "1" / f"{i}.wav.npy"), ref)


def test_bad_arguments_are_refused_before_anything_is_written(
    run, audio, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    ck = str(run / "model.ckpt")
    assert abt(["embed", ck, str(tmp_path / "nope"), "--out", str(tmp_path / "o1")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o1").exists()
    for inside in (audio, audio / "a" / "emb"):
        assert abt(["embed", ck, str(audio), "--out", str(inside)]) == 2
        assert "inside the input folder" in capsys.readouterr().err
    assert not (audio / "a" / "emb").exists()
    assert (
        abt(["embed", str(tmp_path / "missing.ckpt"), str(audio), "--out", str(tmp_path / "o2")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert abt(["embed", ck, str(audio), "--out", str(tmp_path / "o3"), "--device", "mps"]) == 2
    assert "no mps device" in capsys.readouterr().err


def test_nothing_embeddable_exits_1_and_force_replaces_the_old_outputs(run, audio, tmp_path):
    ck = str(run / "model.ckpt")
    out = tmp_path / "o"
    assert (
        abt(["embed", ck, str(audio / "broken.wav"), str(audio / "empty.wav"), "--out", str(out)])
        == 1
    )
    assert [r["status"] for r in index(out).values()] == ["unreadable", "empty"]
    assert abt(["embed", ck, str(audio / "a"), "--out", str(out)]) == 2  # not empty
    assert abt(["embed", ck, str(audio / "a"), "--out", str(out), "--force"]) == 0
    (out / "mine.txt").write_text("a file of the user's")
    assert abt(["embed", ck, str(audio / "c.wav"), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "c.wav.npy",
        "index.csv",
        "mine.txt",
    ]  # x.wav.npy of the previous run is gone


def test_one_input_twice_is_embedded_once_and_output_clashes_are_refused(audio, tmp_path):
    items = collect_inputs([audio / "a", audio / "a" / "x.wav"])
    assert [it.rel for it in items] == ["x.wav"]
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "x.wav.times").write_bytes(b"")
    with pytest.raises(EmbedError, match="same output"):
        collect_inputs([tmp_path / "x.wav", tmp_path / "x.wav.times"])


def test_the_readme_use_a_model_lines_work(run, audio, tmp_path):
    """The README's 'Use a model' section: the abt embed command and the four Python lines give
    the same embedding of a file."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use a model", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```\n(abt embed .*?)\s+#", section).group(1)
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([ln for ln in python.splitlines() if ln.strip()]) == 4 and "load_model" in python
    (tmp_path / "my_audio").mkdir()
    sf.write(tmp_path / "my_audio" / "clip.wav", noise(30000, 7, ch=2), 22050)
    subs = {
        "RUN_DIR": str(run),
        "my_audio/": f"{tmp_path / 'my_audio'}/",
        "embeddings/": str(tmp_path / "embeddings"),
    }
    argv = shell.split()[1:]
    argv = [next((w.replace(k, v) for k, v in subs.items() if k in w), w) for w in argv]
    assert abt(argv) == 0
    code = python
    for k, v in subs.items():
        code = code.replace(k, v)
    ns: dict = {}
    exec(code, ns)
    assert ns["emb"].shape == (1, ns["model"].scene_embedding_size)
    np.testing.assert_array_equal(
        ns["emb"][0].numpy(), np.load(tmp_path / "embeddings" / "clip.wav.npy")
    )
    # ... then "Share a model": the export command, and the four lines on the exported folder
    export = re.search(r"```\n(abt export .*?)\s+#", section).group(1).split()[1:]
    export = [
        w.replace("RUN_DIR", str(run)).replace("exported/", f"{tmp_path}/exported/") for w in export
    ]
    assert abt(export) == 0
    ns2: dict = {}
    exec(code.replace(f"{run}/model.ckpt", export[2]), ns2)
    assert torch.equal(ns2["emb"], ns["emb"])


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "cuda, mps, picked",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, picked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert devices.pick_device("auto") == torch.device(picked)
    assert devices.pick_device(None) == torch.device(picked)
    assert devices.pick_device("cpu") == torch.device("cpu")
    if not mps:
        with pytest.raises(devices.DeviceError, match="no mps device"):
            devices.pick_device("mps")
    if not cuda:
        with pytest.raises(devices.DeviceError, match="no CUDA support|no CUDA device is visible"):
            devices.pick_device("cuda")


def test_autocast_only_on_cuda_and_bad_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    for precision, enc in (("auto", "mixed"), ("bf16", "fp32"), ("fp16", "fp32")):
        assert devices.autocast_dtype(precision, enc, torch.device("mps")) is None
        assert devices.autocast_dtype(precision, enc, torch.device("cpu")) is None
        assert devices.autocast_dtype(precision, enc, torch.device("cuda")) is not None
    with pytest.raises(devices.DeviceError, match="not a device"):
        devices.pick_device("gpu")


def test_the_trainer_and_the_hear_module_use_the_device_choice(monkeypatch, tmp_path):
    """One owner: the trainer's device and autocast come from abt.devices, and load_model's
    ``device`` option goes through the same choice."""
    import abt.components
    import abt.trainer

    assert abt.trainer.pick_device is devices.pick_device
    assert abt.components.autocast_dtype is devices.autocast_dtype  # the trainer's components
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ckpt = defaults.random_init(tmp_path / "m.ckpt", "audiontt", "audiontt", {}, 0.0, 1.0, {})
    m = load_model(str(ckpt), device="auto")
    assert m.device == torch.device("cpu")
