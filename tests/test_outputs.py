"""Where commands write: never into their own inputs, never over a file they did not write
(abt.outputs, used by compute-mels, prepare-hear, build-embedded, pretrain and encoders)."""

import json

import defaults
import numpy as np
import pytest
import soundfile as sf
from fakedata import hear_task, tone, write_clip_list

from abt.data.embedded.build import build_embedded
from abt.data.prepare_hear import prepare_task, prepare_tasks
from abt.data.store import MelStore, build_store
from abt.jobs.data import compute_pretrain_mels, compute_task_mels
from abt.jobs.pretrain import check_run_dir
from abt.outputs import MARKER, OutputError, OutputKind, check_output, check_overlap, mark

QUIET = {"log": lambda *_: None}
PRE = {"min_duration_s": 0.064, "on_silent": "exclude", "silence_peak": 1e-4, "workers": 1,
       "dtype": "float32", "stats": {"n_crops": 8, "crop_frames": 96, "seed": 0}}  # fmt: skip
MELS = {"sample_rate": 16000}


@pytest.mark.parametrize(
    "out, inp, how",
    [("a", "a", "is"), ("a/b", "a", "lies inside"), ("a", "a/b/c.csv", "contains")],
)
def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused(tmp_path, out, inp, how):
    with pytest.raises(OutputError, match=f"the output .* {how} the input audio folder"):
        check_overlap(tmp_path / out, {"audio folder": tmp_path / inp}, command="x")
    check_overlap(tmp_path / "elsewhere", {"audio folder": tmp_path / inp}, command="x")


def test_a_symbolic_link_to_an_input_is_the_input(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "audio")
    with pytest.raises(OutputError, match="is the input"):
        check_overlap(tmp_path / "link", {"audio folder": tmp_path / "audio"}, command="x")


def test_only_what_abt_wrote_is_replaced(tmp_path):
    kind = OutputKind("a thing", entries=("data.csv",))
    out = tmp_path / "out"
    check_output(out, kind, command="x")  # absent: fine
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    check_output(out, kind, command="x")  # other entries are never touched
    (out / "data.csv" / "sub").mkdir(parents=True)  # empty folders (Snakemake makes them)
    check_output(out, kind, command="x")
    (out / "data.csv" / "sub").rmdir()
    (out / "data.csv").rmdir()
    (out / "data.csv").write_text("mine too")
    with pytest.raises(OutputError, match=r"out/data.csv was not written by abt as a thing"):
        check_output(out, kind, command="x")
    mark(out, kind)
    check_output(out, kind, command="x")  # marked: abt's own
    with pytest.raises(OutputError, match="holds a thing, not another thing"):
        check_output(out, OutputKind("another thing"), command="x")
    whole = OutputKind("a folder")  # replaced as a whole: must be empty or its own
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x").write_text("")
    with pytest.raises(OutputError, match=r"w is not empty \(x\).* would be deleted"):
        check_output(tmp_path / "w", whole, command="x")
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is an existing file, not a folder"):
        check_output(tmp_path / "f", whole, command="x")


def _audio_folder(d):
    """A user's audio folder whose clip list is index.csv, like a store's index."""
    d.mkdir()
    for i in range(3):
        sf.write(d / f"c{i}.wav", tone(0.5, 16000, 300 + 100 * i), 16000)
    return write_clip_list(d / "index.csv", ["c0", "c1", "c2"])


def test_compute_mels_into_the_audio_folder_keeps_the_clip_list(tmp_path):
    """Regression: --out set to the audio folder replaced the user's index.csv clip list."""
    clips = _audio_folder(tmp_path / "audio")
    before = clips.read_bytes()
    data = {"source": "folder", "audio_dir": str(tmp_path / "audio"), "clip_list": str(clips),
            "clip_list_format": "abt"}  # fmt: skip
    for out in (tmp_path / "audio", tmp_path / "audio" / "store"):
        with pytest.raises(OutputError, match="input audio folder"):
            compute_pretrain_mels(data, MELS, PRE, "", str(out), "silence")
    assert clips.read_bytes() == before and sorted(p.name for p in clips.parent.iterdir()) == [
        "c0.wav", "c1.wav", "c2.wav", "index.csv"]  # fmt: skip
    foreign = tmp_path / "docs"  # somebody's folder with an index.csv of their own
    foreign.mkdir()
    (foreign / "index.csv").write_text("chapter,page\n1,3\n")
    with pytest.raises(OutputError, match=r"docs/index.csv was not written by abt as a log-mel"):
        compute_pretrain_mels(data, MELS, PRE, "", str(foreign), "silence")
    assert (foreign / "index.csv").read_text() == "chapter,page\n1,3\n"
    st = compute_pretrain_mels(data, MELS, PRE, "", str(tmp_path / "store"), "silence")
    assert st["n_clips"] == 3 and json.loads((tmp_path / "store" / MARKER).read_text()) == {
        "kind": "a log-mel store", "written_by": "abt"}  # fmt: skip
    compute_pretrain_mels(
        data, MELS, PRE, "", str(tmp_path / "store"), "silence"
    )  # its own: rebuilt
    assert len(MelStore(tmp_path / "store")) == 3


def test_a_store_written_before_markers_is_still_rebuilt(tmp_path):
    clips = _audio_folder(tmp_path / "audio")
    data = {"source": "folder", "audio_dir": str(tmp_path / "audio"), "clip_list": str(clips)}
    compute_pretrain_mels(data, MELS, PRE, "", str(tmp_path / "store"), "silence")
    (tmp_path / "store" / MARKER).unlink()  # as c3184dd wrote it
    (tmp_path / "store" / "stats.json").unlink()  # even half-installed
    compute_pretrain_mels(data, MELS, PRE, "", str(tmp_path / "store"), "silence")
    assert len(MelStore(tmp_path / "store")) == 3


def test_task_stores_never_go_into_the_task(tmp_path):
    task = hear_task(tmp_path / "dl", "toy", rate=16000)
    with pytest.raises(OutputError, match="lies inside the input task folder"):
        compute_task_mels(str(task), MELS, PRE, str(task / "stores"))


def test_prepare_hear_src_src_keeps_the_download(tmp_path):
    """Regression: `abt prepare-hear SRC SRC` exited 0 and deleted the downloaded 48000/ audio."""
    dl = tmp_path / "dl"
    src = hear_task(dl, "toy")
    files = sorted(p.relative_to(dl) for p in dl.rglob("*"))
    for out in (dl, dl / "16k"):
        with pytest.raises(OutputError, match="input download folder"):
            prepare_tasks(dl, out, **QUIET)
    with pytest.raises(OutputError, match="is the input task source"):
        prepare_task(src, src, **QUIET)
    assert sorted(p.relative_to(dl) for p in dl.rglob("*")) == files
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("")
    with pytest.raises(OutputError, match=r"mine is not empty \(thesis.tex\)"):
        prepare_task(src, tmp_path / "mine", **QUIET)
    rep = prepare_tasks(dl, tmp_path / "out", **QUIET)
    assert [r["status"] for r in rep] == ["prepared"]
    out = tmp_path / "out" / src.name
    assert json.loads((out / MARKER).read_text())["kind"] == "a prepared HEAR task"
    # Snakemake removes a rule's declared outputs (the metadata, the report) before running it
    # again; the marked folder is still the task's own
    (out / "task_metadata.json").unlink()
    (out / "prepare_report.json").unlink()
    assert prepare_task(src, out, **QUIET)["status"] == "prepared"


def test_build_embedded_keeps_a_foreign_tasks_folder(tmp_path):
    """build_embedded replaced pool/, tasks/, sources/ and manifest.json wherever --out was."""
    out = tmp_path / "data"
    (out / "tasks").mkdir(parents=True)
    (out / "tasks" / "todo.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"data/tasks was not written by abt as an embedded"):
        build_embedded(out, seed=0, scale=0.02, tasks=["embedded_envsounds"], use_debian="never")
    assert (out / "tasks" / "todo.txt").read_text() == "mine"
    from abt.data.embedded.build import EMBEDDED_OUTPUT

    (tmp_path / "wf" / "pool").mkdir(parents=True)  # what Snakemake creates for pool/clips.csv
    check_output(tmp_path / "wf", EMBEDDED_OUTPUT, command="x")


def test_a_run_folder_is_not_the_store_and_holds_only_a_run(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for run_dir, how in ((store, "is"), (store / "run", "lies inside"), (tmp_path, "contains")):
        with pytest.raises(OutputError, match=f"output .* {how} the input store"):
            check_run_dir(str(run_dir), str(store))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "photo.jpg").write_bytes(b"")
    with pytest.raises(OutputError, match=r"home is not empty \(photo.jpg\)"):
        check_run_dir(str(tmp_path / "home"), str(store))
    old = tmp_path / "old_run"  # a run written before markers: its files say what it is
    old.mkdir()
    (old / "hparams.yaml").write_text("seed: 0\n")
    check_run_dir(str(old), str(store))


def test_every_store_writer_refuses_foreign_files(tmp_path):
    from abt.data.store import ClipSpec, pack_store

    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mels.npy").write_bytes(b"mine")
    (tmp_path / "x" / "stats.json").write_text("{}")
    sf.write(tmp_path / "a.wav", tone(0.5, 16000), 16000)
    with pytest.raises(OutputError, match="not written by abt as a log-mel store"):
        build_store(
            [ClipSpec("a", str(tmp_path / "a.wav"))],
            tmp_path / "x",
            defaults.store_settings(),
            **QUIET,
        )
    with pytest.raises(OutputError, match="not written by abt as a log-mel store"):
        pack_store(
            [("a", np.zeros((100, 64), np.float32))], tmp_path / "x", defaults.store_settings()
        )
    assert (tmp_path / "x" / "mels.npy").read_bytes() == b"mine"


def test_a_file_output_replaces_only_its_own_kind_of_file(tmp_path):
    from abt.outputs import header_is

    table = OutputKind("a table", folder=False, legacy=lambda f: header_is(f, ["a", "b"]))
    f = tmp_path / "t.csv"
    check_output(f, table, command="x")  # absent
    f.write_text("a,b\n1,2\n")
    check_output(f, table, command="x")  # its own: replaced
    f.write_text("name,phone\n")
    with pytest.raises(OutputError, match=r"t.csv exists and is not a table written by abt"):
        check_output(f, table, command="x")
    with pytest.raises(OutputError, match="is a folder; give a file path"):
        check_output(tmp_path, table, command="x")
