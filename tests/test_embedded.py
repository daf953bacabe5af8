"""The embedded default data set: layout, HEAR format, source disjointness, determinism."""

from __future__ import annotations

import csv
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from abt.data.embedded import TASKS, build_embedded
from abt.data.embedded import debian as deb
from abt.data.embedded.pool import SOURCE_SEP
from abt.data.embedded.sources import Universe, rank_split, round_robin
from abt.data.embedded.speech import speak
from abt.data.embedded.textures import TEXTURES, texture
from abt.data.hear_tasks import read_task

SCALE = 0.05
ALL_TASKS = TASKS.names()


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("embedded")
    manifest = build_embedded(out, seed=0, scale=SCALE, use_debian="never")
    return out, manifest


def _task_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "tasks").iterdir())


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- registry/API


def test_registry_has_required_kinds():
    assert len(ALL_TASKS) >= 6
    assert all(n.startswith("embedded_") for n in ALL_TASKS)


def test_unknown_task_and_bad_arguments(tmp_path: Path):
    with pytest.raises(KeyError, match="unknown embedded task 'nope'"):
        build_embedded(tmp_path, seed=0, scale=0.05, tasks=["nope"])
    with pytest.raises(ValueError, match="use_debian"):
        build_embedded(tmp_path, seed=0, scale=0.05, use_debian="sometimes")
    with pytest.raises(ValueError, match="scale"):
        build_embedded(tmp_path, seed=0, scale=0)
    assert not (tmp_path / "pool").exists()


def test_require_debian_fails_without_packages(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(deb, "ROOT", tmp_path / "empty-root")
    with pytest.raises(FileNotFoundError, match="require"):
        build_embedded(tmp_path / "out", seed=0, scale=0.05, tasks=[], use_debian="require")


# ---------------------------------------------------------------------------------- layout


def test_manifest_and_pool_layout(built):
    out, m = built
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(m))
    assert m["seed"] == 0 and m["scale"] == SCALE
    assert m["debian"] == {"use_debian": "never", "found": {}, "used": {}}
    assert set(m["tasks"]) == set(ALL_TASKS)
    assert m["source_disjointness"]["ok"] is True
    assert {"abt_embedded", "espeakng-loader", "midirenderer", "soundfont"} <= set(
        m["generator_versions"]
    )
    rows = _rows(out / "pool" / "clips.csv")
    assert list(rows[0]) == ["clip_id", "path", "source_id", "kind"]
    assert len(rows) == m["pool"]["n_clips"] >= 20
    assert {r["kind"] for r in rows} <= {
        "speech",
        "music",
        "note",
        "texture",
        "mixture",
        "recording",
    }
    assert {"speech", "music", "texture"} <= {r["kind"] for r in rows}
    for r in rows[:40]:
        info = sf.info(str(out / "pool" / r["path"]))
        assert (info.samplerate, info.channels) == (16000, 1)
        x, _ = sf.read(str(out / "pool" / r["path"]))
        assert np.sqrt(np.mean(x**2)) > 1e-3  # no near-silent clips
    assert sorted(p.name for p in (out / "tasks").iterdir()) == sorted(
        f"{n}-v1-full" for n in ALL_TASKS
    )


def test_read_task_accepts_every_built_task(built):
    out, m = built
    for d in _task_dirs(out):
        info = read_task(d, check_audio=True)
        assert info.sample_rate == 16000
        assert d.name == f"{info.task_name}-v1-full"
        assert info.n_clips() == m["tasks"][info.task_name]["n_clips"]
        assert info.metadata["mode"] == "full" and info.metadata["version"] == "v1"


def test_hear_layout_facts(built):
    out, _ = built
    kinds = {"kfold": 0, "event": 0, "pitch": 0}
    for d in _task_dirs(out):
        info = read_task(d)
        md = info.metadata
        if info.is_kfold:
            kinds["kfold"] += 1
            assert md["split_mode"] == "new_split_kfold"
            assert info.splits == ["fold00", "fold01", "fold02", "fold03", "fold04"]
            assert md["nfolds"] == 5
        else:
            assert info.splits == ["train", "valid", "test"]
        for split in info.splits:
            assert info.labels[split], f"{d.name}: empty split {split}"
            for fname in list(info.labels[split])[:10]:
                x, sr = sf.read(str(info.audio_path(split, fname)))
                assert sr == 16000 and x.ndim == 1
                assert len(x) == int(round(md["sample_duration"] * sr))
                assert np.sqrt(np.mean(x**2)) > 1e-3
        if info.embedding_type == "event":
            kinds["event"] += 1
            assert md["prediction_type"] == "multilabel"
            assert md["evaluation"] == ["event_onset_200ms_fms", "segment_1s_er"]
            n_events = 0
            for split in info.splits:
                for events in info.labels[split].values():
                    for e in events:
                        assert 0 <= e["start"] < e["end"] <= md["sample_duration"] * 1000
                        assert e["end"] - e["start"] >= 50  # milliseconds, not seconds
                        n_events += 1
            assert n_events >= 3 * info.n_clips()
        else:
            assert md["prediction_type"] == "multiclass"
            if md["evaluation"][0] == "pitch_acc":
                kinds["pitch"] += 1
                assert md["evaluation"] == ["pitch_acc", "chroma_acc"]
                pitches = [int(v) for v in info.vocabulary]
                assert pitches == list(range(pitches[0], pitches[0] + len(pitches)))
            else:
                assert md["evaluation"] == ["top1_acc", "mAP", "d_prime", "aucroc"]
    assert kinds["kfold"] >= 1 and kinds["event"] >= 1 and kinds["pitch"] >= 1


def test_every_class_is_used(built):
    out, m = built
    for name, t in m["tasks"].items():
        key = "n_events_per_class" if t["embedding_type"] == "event" else "n_per_class"
        totals = {}
        for s in t["splits"].values():
            for lab, k in s[key].items():
                totals[lab] = totals.get(lab, 0) + k
        assert all(v > 0 for v in totals.values()), (name, totals)


# ------------------------------------------------------------------------- disjointness


def test_source_disjointness_from_files(built):
    out, m = built
    pool = {s for r in _rows(out / "pool" / "clips.csv") for s in r["source_id"].split(SOURCE_SEP)}
    u = Universe.build(0)
    task_half = {v.source_id for v in u.task_voices} | {f"gm:{p}" for p in u.task_programs}
    assert not pool & task_half  # the pool only draws on the pool half
    for name, t in m["tasks"].items():
        rows = _rows(out / "sources" / f"{name}-v1-full.csv")
        by_split: dict[str, set[str]] = {}
        for r in rows:
            by_split.setdefault(r["split"], set()).update(r["source_id"].split(SOURCE_SEP))
        tested = (
            by_split["test"]
            if t["split_mode"] == "trainvaltest"
            else set().union(*by_split.values())
        )
        assert tested, name
        assert not tested & pool, (name, sorted(tested & pool)[:5])
        splits = sorted(by_split)
        for prefix in t["split_key_prefixes"]:
            for i, a in enumerate(splits):
                for b in splits[i + 1 :]:
                    shared = {s for s in by_split[a] & by_split[b] if s.startswith(prefix)}
                    assert not shared, (name, a, b, sorted(shared)[:5])
        assert any(p in ("voice:", "gm:", "tex:", "piece:") for p in t["split_key_prefixes"])


def test_rank_split_properties():
    ids = [f"x{i}" for i in range(101)]
    a = rank_split(ids, 3, "g", (0.5, 0.3, 0.2))
    assert a == rank_split(list(reversed(ids)), 3, "g", (0.5, 0.3, 0.2))  # order-free
    assert [len(c) for c in a] == [51, 30, 20] or sum(len(c) for c in a) == 101
    assert sorted(sum(a, [])) == sorted(ids)
    assert a != rank_split(ids, 4, "g", (0.5, 0.3, 0.2))  # seed matters
    tiny = rank_split(["a", "b", "c"], 0, "g", (0.9, 0.05, 0.05))
    assert all(len(c) == 1 for c in tiny)  # every chunk non-empty when possible
    folds = round_robin(ids, 0, "f", 5)
    assert sorted(len(f) for f in folds) == [20, 20, 20, 20, 21]


def test_universe_halves_are_disjoint_and_diverse():
    u = Universe.build(0)
    assert not {v.name for v in u.pool_voices} & {v.name for v in u.task_voices}
    assert not set(u.pool_programs) & set(u.task_programs)
    assert not set(u.pool_kits) & set(u.task_kits) and u.pool_kits and u.task_kits
    assert {p // 8 for p in u.pool_programs} == {p // 8 for p in u.task_programs} == set(range(16))
    for kind in TEXTURES.names():
        assert not set(u.pool_textures[kind]) & set(u.task_textures[kind])


# ---------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_same_seed_same_bytes(built, tmp_path: Path):
    out, m = built
    m2 = build_embedded(tmp_path / "again", seed=0, scale=SCALE, use_debian="never", workers=2)
    assert m2 == m
    assert _tree_hashes(tmp_path / "again") == _tree_hashes(out)


def test_different_seed_differs(built, tmp_path: Path):
    out, _ = built
    sub = ["embedded_pitch", "embedded_office_events"]
    build_embedded(tmp_path / "s1", seed=1, scale=SCALE, tasks=sub, use_debian="never")
    h0, h1 = _tree_hashes(out), _tree_hashes(tmp_path / "s1")
    pool0 = {v for k, v in h0.items() if k.startswith("pool/audio/")}
    pool1 = {v for k, v in h1.items() if k.startswith("pool/audio/")}
    assert not pool0 & pool1
    for name in sub:
        a = {v for k, v in h0.items() if k.startswith(f"tasks/{name}-v1-full/16000/")}
        b = {v for k, v in h1.items() if k.startswith(f"tasks/{name}-v1-full/16000/")}
        assert a and b and not a & b


def test_speech_is_a_pure_function():
    a = speak("left", "en-us+f2", rate=150, pitch=60)
    speak("the quick brown fox", "en+whisper")
    b = speak("left", "en-us+f2", rate=150, pitch=60)
    assert len(a) > 1000 and np.array_equal(a, b)
    assert not np.array_equal(a, speak("left", "en-us+f2", rate=150, pitch=61))


def test_textures_are_finite_and_audible():
    for kind in TEXTURES.names():
        y = texture(kind, 0, 0, 16000, np.random.default_rng(0))
        assert y.shape == (16000,) and np.isfinite(y).all(), kind
        assert np.sqrt(np.mean(y**2)) > 1e-3, kind
        assert np.array_equal(y, texture(kind, 0, 0, 16000, np.random.default_rng(0)))


# --------------------------------------------------------------------------------- Debian


def _fake_opensfx(path: Path, sounds: dict[str, np.ndarray]) -> None:
    """An OpenTTD-style .cat: (offset, size) table, then length-prefixed name + RIFF payload."""
    import io

    payloads = []
    for name, x in sounds.items():
        buf = io.BytesIO()
        sf.write(buf, x, 11025, format="WAV", subtype="PCM_U8")
        nm = name.encode() + b"\0"
        payloads.append(bytes([len(nm)]) + nm + buf.getvalue())
    table = 8 * len(payloads)
    offsets, pos = [], table
    for p in payloads:
        offsets.append((pos | 0x80000000 if not offsets else pos, len(p)))
        pos += len(p)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(struct.pack("<II", o, s) for o, s in offsets) + b"".join(payloads))


def test_debian_sources_feed_only_the_pool(tmp_path: Path, monkeypatch):
    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    fd = root / "usr/share/sounds/freedesktop/stereo"
    fd.mkdir(parents=True)
    for i in range(3):  # 44.1 kHz stereo, with leading silence
        x = np.zeros((44100, 2))
        x[8000:30000] = 0.3 * rng.standard_normal((22000, 2))
        sf.write(str(fd / f"bell-{i}.wav"), x, 44100)
    _fake_opensfx(
        root / "usr/share/games/openttd/baseset/opensfx/opensfx.cat",
        {"train": 0.5 * np.sin(np.arange(20000) / 7.0), "horn": 0.4 * rng.standard_normal(15000)},
    )
    found = deb.detect(root)
    assert sorted(found) == ["openttd-opensfx", "sound-theme-freedesktop"]
    item = found["openttd-opensfx"][1]
    y = deb.load(item)
    assert abs(len(y) - 15000 * 16000 / 11025) < 10 and item.source_id.endswith("opensfx.cat#001")

    monkeypatch.setattr(deb, "ROOT", root)
    m = build_embedded(tmp_path / "out", seed=0, scale=0.02, tasks=[], use_debian="require")
    assert m["debian"]["found"] == {"openttd-opensfx": 2, "sound-theme-freedesktop": 3}
    assert sum(m["debian"]["used"].values()) >= 1
    rows = _rows(tmp_path / "out" / "pool" / "clips.csv")
    assert any(r["kind"] == "recording" and "deb:" in r["source_id"] for r in rows)
    assert m["tasks"] == {} and m["source_disjointness"]["ok"]


def test_check_sources_flags_leaks_and_shared_split_keys():
    from abt.data.embedded import check_sources

    def task(split_sources, tested, prefixes=("voice:",)):
        return {
            "_split_sources": split_sources,
            "_test_splits": tested,
            "split_key_prefixes": list(prefixes),
        }

    clean = task({"train": {"voice:a", "tex:r:1"}, "test": {"voice:b", "tex:r:1"}}, ["test"])
    assert check_sources({"voice:c"}, {"t": clean})["ok"]
    leak = check_sources({"voice:b"}, {"t": clean})
    assert not leak["ok"] and leak["tasks"]["t"]["tested_sources_in_pool"] == ["voice:b"]
    shared = task({"fold00": {"voice:a"}, "fold01": {"voice:a"}}, ["fold00", "fold01"])
    rep = check_sources(set(), {"t": shared})
    assert not rep["ok"]
    assert rep["tasks"]["t"]["split_key_sources_shared_between_splits"]["voice:"] == ["voice:a"]


def test_more_debian_sources_are_listed_with_their_kinds(tmp_path: Path):
    root = tmp_path / "root"
    prompts = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    for rel in ("hello.wav", "digits/1.wav", "silence/1.wav"):
        (prompts / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(prompts / rel), np.zeros(800), 8000)
    moh = root / "usr/share/asterisk/moh"
    moh.mkdir(parents=True)
    sf.write(str(moh / "track.wav"), np.zeros(800), 8000)
    keys = root / "usr/share/buckle/wav"
    keys.mkdir(parents=True)
    sf.write(str(keys / "01-0.wav"), np.zeros(800), 44100)
    found = deb.detect(root)
    assert {k: [(i.kind, Path(i.path).name) for i in v] for k, v in found.items()} == {
        "asterisk-core-sounds-en-wav": [("speech", "1.wav"), ("speech", "hello.wav")],
        "asterisk-moh-opsound-wav": [("recording", "track.wav")],
        "bucklespring-data": [("drums", "01-0.wav")],
    }  # the silence prompts are not recordings
    assert found["bucklespring-data"][0].source_id.startswith("deb:bucklespring-data:")


class _FakeDist:
    """An installed distribution as importlib.metadata describes it (files, location, version)."""

    def __init__(self, base: Path, files: list[str], version: str = "1.0") -> None:
        self.base, self.files, self.version = base, files, version

    def locate_file(self, rel: str) -> Path:
        return self.base / rel


def test_pip_sounds_feed_only_the_pool_with_location_free_ids(tmp_path: Path, monkeypatch):
    import importlib.metadata as md

    from abt.data.embedded import pipsounds

    site = tmp_path / "site-packages"
    rng = np.random.default_rng(0)
    files = ["pyo/examples/snds/flute.aif", "pyo/examples/snds/drum.wav",
             "pyo/examples/snds/drum.ogg", "pyo/lib/snds/IRMediumHallStereo.wav",
             "pyo/lib/snds/accord.aif", "pyo/other/skip.wav", "pyo/__init__.py"]  # fmt: skip
    for rel in files:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".py"):
            (site / rel).write_text("")
        else:
            fmt = "AIFF" if rel.endswith(".aif") else ("OGG" if rel.endswith(".ogg") else "WAV")
            sf.write(str(site / rel), 0.3 * rng.standard_normal(22050), 44100, format=fmt)
    dists = {"pyo": _FakeDist(site, files, "1.1.0")}

    def distribution(name: str):
        if name not in dists:
            raise md.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setattr(pipsounds.md, "distribution", distribution)
    found = pipsounds.detect()
    assert [i.source_id for i in found["pip:pyo"]] == [
        "pip:pyo:pyo/examples/snds/drum.wav",  # one format per sound; the .ogg twin is not used
        "pip:pyo:pyo/examples/snds/flute.aif",
        "pip:pyo:pyo/lib/snds/accord.aif",  # the room impulse response is not a sound
    ]
    assert len(deb.load(found["pip:pyo"][1])) == 8000  # read like the Debian files: 16 kHz mono

    monkeypatch.setattr(deb, "ROOT", tmp_path / "no-debian")
    m = build_embedded(tmp_path / "out", seed=0, scale=0.02, tasks=[], use_debian="never",
                       use_pip_sounds="require")  # fmt: skip
    assert m["pip_sounds"]["found"] == {"pip:pyo": 3}
    assert m["pip_sounds"]["versions"] == {"pip:pyo": "1.1.0"}
    assert sum(m["pip_sounds"]["used"].values()) >= 1 and m["debian"]["used"] == {}
    rows = _rows(tmp_path / "out" / "pool" / "clips.csv")
    assert any(r["kind"] == "recording" and "pip:pyo:pyo/" in r["source_id"] for r in rows)
    assert str(site) not in (tmp_path / "out" / "pool" / "clips.csv").read_text()

    m0 = build_embedded(tmp_path / "out0", seed=0, scale=0.02, tasks=[], use_debian="never")
    assert m0["pip_sounds"] == {"use_pip_sounds": "never", "found": {}, "versions": {}, "used": {}}
    with pytest.raises(ValueError, match="use_pip_sounds"):
        build_embedded(tmp_path / "bad", seed=0, scale=0.02, use_pip_sounds="sometimes")
    dists.clear()
    with pytest.raises(FileNotFoundError, match="use_pip_sounds='require'"):
        build_embedded(tmp_path / "none", seed=0, scale=0.02, tasks=[], use_pip_sounds="require")
