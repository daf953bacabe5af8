"""Resume across hardware: CPU <-> CUDA, other GPU and process counts, a gradient scaler that
appears or disappears (bf16 / fp32 / CPU <-> fp16) -- an exact continuation where the device type
stays, a logged, deterministic mapping where it cannot, a ResumeError where nothing fits. The
CUDA sides are faked on the CPU (states, generators and the torch.cuda calls)."""

import contextlib
import random

import numpy as np
import pytest
import torch
from fakedata import tone_store

from abt import devicestate
from abt.checkpoint import save_sealed
from abt.config import REPO_ROOT, ConfigError, load_config
from abt.runspec import resolve as resolve_run_config
from abt.trainer import ResumeError, Trainer, _as_tuple

TINY = {"epochs": 3, "batch_size": 8, "projector": {"hidden_dims": [64], "out_dim": 32},
        "log_every": 2}  # fmt: skip
PHILOX = torch.arange(16, dtype=torch.uint8)  # a CUDA generator state: seed and offset


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tone_store(tmp_path_factory.mktemp("pool"), 32, seed=0, seconds=(0.6, 1.6),
                      noise=0.02, stats_crops=200)  # fmt: skip


def run_cfg(**over):
    return resolve_run_config(load_config(REPO_ROOT / "config.yaml"), overrides={**TINY, **over})


def _trainer(store, run_dir, logs=None, **over):
    log = logs.append if logs is not None else (lambda *_: None)
    return Trainer(run_cfg(**over), store, run_dir, progress=False, log=log)


def _checkpoint(store, tmp_path, **over):
    tr = _trainer(store, tmp_path / "saved", **over)
    tr.fit(stop_after_epochs=1)
    return torch.load(tr.resume_path, map_location="cpu", weights_only=True)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _as_saved_on_cuda(st, legacy=False):
    """The checkpoint as a CUDA run would have written it (one process on an H200, bf16);
    ``legacy``: as abt wrote it before the pipeline's state left its generator to
    ``aug_generator`` (the Philox state a second time, inside the pipeline's own state)."""
    if legacy:
        extra = {"generator_state": PHILOX.clone(), "generator_device": "cuda:0"}
        st = {**st, "augment": {**st["augment"], "_extra_state": extra}}
    return {**st, "aug_generator": PHILOX.clone(), "aug_generator_device": "cuda",
            "cuda_rng": [PHILOX.clone()], "scaler": {},
            "hardware": {"type": "cuda", "name": "NVIDIA H200", "capability": [9, 0],
                         "visible": 4, "world": 1, "autocast": "bfloat16"}}  # fmt: skip


def test_the_augmentation_generator_is_saved_once(store, tmp_path):
    """Its state is the device-aware ``aug_generator`` entry's (abt.devicestate), not also the
    pipeline's own state, which keeps the Mixup memory (resuming exactly from it is
    test_same_device_type_continues_exactly_and_says_nothing)."""
    st = _checkpoint(store, tmp_path)
    assert st["aug_generator"].dtype == torch.uint8 and st["aug_generator_device"] == "cpu"
    assert st["augment"]["_extra_state"] == {"generator_state": None, "generator_device": None}
    banks = [v for k, v in st["augment"].items() if k.endswith("_extra_state") and "bank" in v]
    assert banks and banks[0]["count"] > 0  # the Mixup memory is there


@pytest.mark.parametrize("legacy", [False, True])
def test_saved_on_cuda_continues_on_the_cpu_deterministically(store, tmp_path, legacy):
    """The 16-byte Philox state cannot seed the CPU's Mersenne Twister ('RNG state is wrong
    size' before): the augmentation generator is seeded from the seed and the step, the log
    says what changed, every CPU stream and the model continue, and resuming the same
    checkpoint twice gives the same run. ``legacy``: a file that also holds the Philox state in
    the pipeline's own state, as abt wrote them before."""
    st = _as_saved_on_cuda(_checkpoint(store, tmp_path), legacy)
    ends = []
    for name in ("a", "b"):
        logs = []
        tr = _trainer(store, tmp_path / name, logs)
        tr.resume_path.parent.mkdir(parents=True)
        save_sealed(tr.resume_path, st)
        s = tr.fit()
        assert s["epochs"] == 3 and np.isfinite(s["final_loss"])
        text = "\n".join(logs)
        assert "saved on type cuda, name NVIDIA H200, world 1, autocast bfloat16" in text
        assert "continues on type cpu, world 1, autocast fp32" in text
        assert "augmentation generator was saved on cuda and cannot continue on cpu" in text
        assert "CUDA generator states of the checkpoint are not used on the cpu" in text
        ends.append(_weights(tmp_path / name / "model.ckpt"))
    assert all(torch.equal(ends[0][k], ends[1][k]) for k in ends[0])


def test_same_device_type_continues_exactly_and_says_nothing(store, tmp_path):
    ref = _trainer(store, tmp_path / "ref")
    ref.fit()
    _checkpoint(store, tmp_path)
    logs = []
    _trainer(store, tmp_path / "saved", logs).fit()
    assert not any("other hardware" in m for m in logs)
    a, b = _weights(tmp_path / "ref" / "model.ckpt"), _weights(tmp_path / "saved" / "model.ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


class FakeCuda:
    """The torch.cuda calls of a resume on CUDA, recorded (this box has no GPU)."""

    def __init__(self, monkeypatch):
        self.set, self.seeded = [], []
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d="cuda": self.set.append(
            (s.clone(), d)))  # fmt: skip
        monkeypatch.setattr(torch.cuda, "manual_seed", lambda s: self.seeded.append(s))
        monkeypatch.setattr(torch.cuda, "device", lambda d: __import__("contextlib").nullcontext())

        def forbidden(*a, **k):
            raise AssertionError("set_rng_state_all indexes every visible GPU")

        monkeypatch.setattr(torch.cuda, "set_rng_state_all", forbidden)


class FakeCudaGenerator:
    device = torch.device("cuda")

    def __init__(self):
        self.state, self.seed = PHILOX.clone(), None

    def set_state(self, s):
        if s.numel() != 16:
            raise RuntimeError("RNG state is wrong size")
        self.state = s.clone()

    def get_state(self):
        return self.state

    def manual_seed(self, seed):
        self.seed = seed
        return self


def test_saved_on_the_cpu_continues_on_cuda(store, tmp_path, monkeypatch):
    st = _checkpoint(store, tmp_path)
    cuda, gen = FakeCuda(monkeypatch), FakeCudaGenerator()
    torch.manual_seed(123)  # the restore must bring the CPU stream back
    notes = devicestate.restore(st, aug_generator=gen, device=torch.device("cuda", 0), rank=0,
                                world=1, seed=7, step=int(st["step"]))  # fmt: skip
    assert gen.seed == devicestate.derived_seed(8, st["step"]) and torch.equal(gen.state, PHILOX)
    assert cuda.seeded == [devicestate.derived_seed(7, st["step"])] and cuda.set == []
    assert torch.equal(torch.get_rng_state(), st["torch_rng"])
    assert any("saved on cpu and cannot continue on cuda" in n for n in notes)
    assert any("no CUDA generator state" in n for n in notes)


@pytest.mark.parametrize(
    "saved_ranks,rank,world,want,note",
    [
        (1, 0, 1, 0, False),  # a single-GPU run on a 4-GPU node resumed with one visible GPU
        (2, 1, 2, 1, False),  # rank 1 continues its own stream, not rank 0's copy
        (4, 0, 1, 0, True),  # a 4-GPU run resumed as a 1-GPU job
        (2, 2, 3, 0, True),  # a new rank takes rank 0's stream
    ],
)
def test_each_rank_continues_its_own_cuda_stream(monkeypatch, saved_ranks, rank, world, want,
                                                 note):  # fmt: skip
    cuda = FakeCuda(monkeypatch)
    states = [PHILOX + 16 * r for r in range(saved_ranks)]
    st = {"aug_generator": PHILOX, "aug_generator_device": "cuda", "cuda_rng": states,
          "torch_rng": torch.get_rng_state()}  # fmt: skip
    gen = FakeCudaGenerator()
    dev = torch.device("cuda", rank)
    notes = devicestate.restore(st, aug_generator=gen, device=dev, rank=rank, world=world,
                                seed=0, step=5)  # fmt: skip
    assert len(cuda.set) == 1 and torch.equal(cuda.set[0][0], states[want])
    assert cuda.set[0][1] == dev and gen.seed is None  # the augmentation stream is exact
    assert bool(notes) is note


def test_the_checkpoint_holds_every_rank_own_cuda_stream(monkeypatch, store, tmp_path):
    """Saving gathers the state of the GPU each rank trains on (a collective under DDP)."""
    import torch.distributed as dist

    mine = {0: PHILOX, 1: PHILOX + 1}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d: mine[d.index].clone())

    def all_gather_object(out, obj):
        out[:] = [mine[0], obj]  # rank 0's and this rank's (1)

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)
    got = devicestate.gather_cuda_rng(torch.device("cuda", 1), world=2)
    assert [t.tolist() for t in got] == [mine[0].tolist(), mine[1].tolist()]
    assert devicestate.gather_cuda_rng(torch.device("cuda", 0), world=1)[0].equal(mine[0])
    assert devicestate.gather_cuda_rng(torch.device("cpu"), world=2) == []
    tr = _trainer(store, tmp_path / "r")
    assert tr.state(cuda_rng=got)["cuda_rng"] == got and tr.state()["cuda_rng"] == []


def test_a_scaler_saved_disabled_loads_where_fp16_enables_it(store, tmp_path):
    """Regression: GradScaler.load_state_dict raised 'The source state dict is empty' for a
    checkpoint written without scaling (bf16, fp32, CPU) resumed with fp16: the scale starts
    afresh. A scale saved by fp16 survives segments without scaling."""
    st = _checkpoint(store, tmp_path)
    assert st["scaler"] == {}
    logs = []
    tr = _trainer(store, tmp_path / "fp16", logs)
    tr.scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=2.0**16)
    tr.load_state(st)
    assert tr.scaler.get_scale() == 2.0**16 and tr.epoch == 1
    assert any("gradient scaling starts afresh" in m for m in logs)
    tr.scaler.scale(torch.ones(()))  # the scale tensor exists once a step has scaled
    tr.scaler.update(1024.0)
    fp16 = tr.state()["scaler"]
    assert fp16["scale"] == 1024.0
    bf16 = _trainer(store, tmp_path / "bf16")  # scaling disabled: the fp16 scale is carried
    bf16.load_state({**st, "scaler": fp16})
    assert not bf16.scaler.is_enabled() and bf16.state()["scaler"] == fp16
    again = _trainer(store, tmp_path / "fp16b")
    again.scaler = torch.amp.GradScaler("cpu", enabled=True)
    again.load_state({**st, "scaler": bf16.state()["scaler"]})
    assert again.scaler.get_scale() == 1024.0


def test_a_generator_state_that_fits_nothing_is_a_resume_error(store, tmp_path):
    st = _checkpoint(store, tmp_path)
    st["aug_generator"] = torch.zeros(100, dtype=torch.uint8)  # neither MT19937 nor Philox
    tr = _trainer(store, tmp_path / "saved")
    with pytest.raises(ResumeError) as e:
        tr.load_state(st)
    msg = str(e.value)
    assert "augmentation generator state saved on cpu (100 bytes)" in msg
    assert str(tr.resume_path) in msg and "move or delete" in msg


@pytest.mark.parametrize("encoder", ["audiontt", "vitc_t_16x16"])
def test_fp16_steps_never_read_the_device(store, tmp_path, monkeypatch, encoder):
    """fp16 autocast with gradient scaling (what ``mixed`` is below sm_80), on the CPU: the
    optimiser skips overflowed steps on the device (LARS itself, AdamW fused), so a step
    reads nothing back -- not even the scaler's found_inf."""
    monkeypatch.setattr("abt.components.autocast_dtype", lambda *a: torch.float16)
    tr = _trainer(store, tmp_path / "r", encoder=encoder)
    assert tr.scaler.is_enabled() and tr.optimizer._step_supports_amp_scaling
    if encoder == "audiontt":  # fp16 convolutions crawl on a CPU: the scaled path in float32
        tr._autocast = contextlib.nullcontext
    with tr.loader(tr.plan_epoch(), depth=0) as batches:
        xs = [x for _, x in zip(range(2), batches, strict=False)]
    monkeypatch.setattr(type(tr.scaler), "_maybe_opt_step", lambda *a, **k: 1 / 0)
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            reads.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    out = [tr.train_step(x) for x in xs]
    assert reads == []
    monkeypatch.undo()
    assert torch.stack(out).isfinite().all() and tr.scaler.get_scale() > 0


def test_explicit_compile_with_the_sine_schedule_is_refused(store, tmp_path):
    """On CPU (aot_eager backend) ViT_C-T with the sine schedule recompiled once per kept-token
    count, reached torch._dynamo's limit of 8 after 8 steps and then failed (bench/RESULTS.md):
    an explicit compile with the sine schedule is a configuration error; auto leaves it off."""
    sine = {"mode": "sine", "beta": 0.3, "warmup_epochs": 1, "reference_epochs": None}
    speed = {"channels_last": "auto", "compile": "default", "prefetch_batches": 0,
             "cudnn_benchmark": True}  # fmt: skip
    with pytest.raises(ConfigError, match="pretrain.speed.compile: default with pretrain.masking"):
        _trainer(store, tmp_path / "r", encoder="vitc_t_16x8", masking=sine, speed=speed)
    tr = _trainer(store, tmp_path / "r", encoder="vitc_t_16x8", masking=sine,
                  speed={**speed, "compile": "auto"})  # fmt: skip
    assert tr.speed["compile"] == "none"


def test_restore_keeps_python_and_numpy_streams(store, tmp_path):
    st = _as_saved_on_cuda(_checkpoint(store, tmp_path))
    tr = _trainer(store, tmp_path / "x")
    random.seed(99)
    tr.load_state(st)
    assert tr.rng.bit_generator.state == st["np_rng"]
    assert random.getstate() == _as_tuple(st["py_rng"])
