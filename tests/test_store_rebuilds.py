"""A store follows its audio through Snakemake: an added, removed, resized or re-timed audio file
of a store rebuilds it (and only then); a file rewritten with the same size and mtime is not seen
(documented). On a copy of the workflow with a folder of audio for pre-training and a prepared
HEAR-format task."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from fakedata import hear_task, tone

from abt.data.store import MelStore

ROOT = Path(__file__).resolve().parents[1]
STORE = "results/mels/pretrain/train/stats.json"
TASK_STORES = "results/mels/tasks/toy"

pytestmark = pytest.mark.slow


def smk(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "src")}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip


def planned(repo: Path, *targets: str) -> set[str]:
    r = smk(repo, *targets, "--dry-run", "--quiet", "rules")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    if "Nothing to be done" in out:
        return set()
    return {p[0] for p in (ln.split() for ln in out.splitlines())
            if len(p) == 2 and p[1].isdigit() and p[0] not in ("total", "job")}  # fmt: skip


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(ROOT / name, repo / name)
    for name in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    audio = repo / "audio"
    for part in ("part0", "part1"):
        (audio / part).mkdir(parents=True)
    with open(repo / "clips.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["clip_id"])
        for i in range(8):
            sf.write(audio / f"part{i % 2}" / f"c{i}.wav", tone(1.0, 16000, 200 + 90 * i), 16000)
            w.writerow([f"c{i}"])
        w.writerow(["c8"])  # no file yet: a missing clip
    task = hear_task(repo / "downloads", "toy")  # 48 kHz: the prepared files are new files
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["data"]["pretrain"].update(source="folder", audio_dir="audio", clip_list="clips.csv",
                                   clip_list_format="abt")  # fmt: skip
    cfg["data"]["tasks"] = {"toy": str(task)}
    cfg["finetune"]["tasks"] = []  # the embedded task it names is not in this configuration
    cfg["preprocess"]["stats"]["n_crops"] = 64
    cfg["monitor"]["task"] = None
    cfg["report"].update(studies=[], sweeps=[], hear_l=["toy"])
    (repo / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = smk(repo, STORE, TASK_STORES, "--cores", "2")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert planned(repo, STORE, TASK_STORES) == set()
    return repo


class Restore:
    """Put a file's bytes, size and mtime back after a change (the fingerprint is stat-based)."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, st = path, path.read_bytes(), path.stat()
        self.times = (st.st_atime_ns, st.st_mtime_ns)

    def __call__(self) -> None:
        self.path.write_bytes(self.data)
        os.utime(self.path, ns=self.times)


@pytest.mark.parametrize("change", ["resized", "removed", "re-timed", "added", "rewritten"])
def test_a_changed_audio_file_rebuilds_the_store(repo, change):
    """Regression: truncating, replacing or deleting a WAV left "Nothing to be done"."""
    f = repo / "audio" / "part1" / "c3.wav"
    restore = Restore(f)
    new = repo / "audio" / "part0" / "c8.wav"
    try:
        if change == "resized":
            sf.write(f, tone(0.7, 16000, 300), 16000)
        elif change == "removed":
            f.unlink()
        elif change == "re-timed":
            os.utime(f, ns=(restore.times[0], restore.times[1] + 10**9))
        elif change == "added":
            sf.write(new, tone(1.0, 16000, 999), 16000)
        else:  # same size, mtime put back (`touch -r`): not seen, as the README says
            sf.write(f, tone(1.0, 16000, 777), 16000)
            assert f.stat().st_size == len(restore.data)
            os.utime(f, ns=restore.times)
        want = set() if change == "rewritten" else {"compute_pretrain_mels"}
        assert planned(repo, STORE) == want
    finally:
        new.unlink(missing_ok=True)
        restore()
    assert planned(repo, STORE, TASK_STORES) == set()


def test_the_rebuilt_store_holds_the_new_audio_and_is_then_current(repo):
    f = repo / "audio" / "part1" / "c5.wav"
    restore = Restore(f)
    try:
        f.unlink()
        r = smk(repo, STORE, "--cores", "2")
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        st = MelStore(repo / "results/mels/pretrain/train")
        assert "c5" not in st.clip_ids and len(st) == 7
        assert planned(repo, STORE) == set()  # what was recorded is what is on disk now
    finally:
        restore()
    assert planned(repo, STORE) == {"compute_pretrain_mels"}
    r = smk(repo, STORE, "--cores", "2")
    assert r.returncode == 0 and len(MelStore(repo / "results/mels/pretrain/train")) == 8


def test_task_audio_changes_reach_the_prepared_task_and_its_stores(repo):
    src = repo / "downloads" / "toy-v1-full" / "48000" / "test" / "test_0.wav"
    restore = Restore(src)
    try:
        sf.write(src, tone(0.3, 48000, 500), 48000)
        assert {"prepare_task", "compute_task_mels"} <= planned(repo, TASK_STORES)
    finally:
        restore()
    assert planned(repo, TASK_STORES) == set()
    prepared = repo / "results/data/tasks/toy/16000/valid/valid_1.wav"
    restore = Restore(prepared)
    try:
        os.truncate(prepared, 1000)
        assert planned(repo, TASK_STORES) == {"compute_task_mels"}
        r = smk(repo, TASK_STORES, "--cores", "1")
        assert r.returncode != 0  # a labelled clip cut short is an error naming it
        assert "valid_1.wav (the file ends after 478 of the 8000 frames" in r.stdout + r.stderr
    finally:
        restore()
