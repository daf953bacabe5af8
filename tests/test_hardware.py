"""What the GPU can do, decided on the CPU with faked device properties: ``precision: mixed`` by
compute capability, TF32 settings, evaluations in exact float32."""

import pytest
import torch

from abt import hardware
from abt.config import REPO_ROOT, load_config
from abt.devices import autocast_dtype
from abt.runspec import resolve

CUDA = torch.device("cuda")

# (compute capability, a card of it): bf16 is native from Ampere (8.0) on
CARDS = [((7, 0), "V100"), ((7, 5), "T4, RTX 6000"), ((8, 0), "A100"), ((8, 6), "RTX A6000"),
         ((9, 0), "H100/H200")]  # fmt: skip


@pytest.fixture
def fake_gpu(monkeypatch):
    """Fake the torch.cuda functions the precision choice may call: a GPU of a given compute
    capability whose ``is_bf16_supported`` answers True, as torch's default (emulation
    included) does on every CUDA GPU of sm_53 and later."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    def use(cap):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: cap)

    return use


@pytest.mark.parametrize("cap,card", CARDS)
def test_mixed_precision_is_bf16_only_where_the_gpu_computes_it(fake_gpu, cap, card):
    fake_gpu(cap)
    native = cap >= (8, 0)
    assert hardware.native_bf16(CUDA) is native, card
    want = torch.bfloat16 if native else torch.float16  # fp16 + gradient scaling below sm_80
    assert autocast_dtype("auto", "mixed", CUDA) is want  # ViT_C under precision: auto
    assert autocast_dtype("mixed", "fp32", CUDA) is want  # every encoder under mixed
    assert autocast_dtype("auto", "fp32", CUDA) is None  # conv encoders: float32 (thesis)
    assert autocast_dtype("bf16", "fp32", CUDA) is torch.bfloat16  # explicit: as asked
    assert autocast_dtype("fp16", "mixed", CUDA) is torch.float16
    assert autocast_dtype("fp32", "mixed", CUDA) is None  # opted out
    assert autocast_dtype("mixed", "mixed", torch.device("cpu")) is None  # CPU: float32


def test_rocm_asks_torch_without_emulation(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.2")
    asked = []

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return False

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert hardware.mixed_dtype(CUDA) is torch.float16 and asked == [False]


def test_thesis_precision_per_encoder_in_the_configuration():
    cfg = load_config(REPO_ROOT / "config.yaml")
    vit = resolve(cfg, "vitc_b_16x8", "baseline", 0)
    assert vit.encoder["precision"] == "mixed" and vit.pretrain["precision"] == "auto"
    assert resolve(cfg, "audiontt", "baseline", 0).encoder["precision"] == "fp32"


@pytest.fixture
def tf32_flags():
    b = torch.backends
    saved = b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark
    yield b
    b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32, b.cudnn.benchmark = saved


@pytest.mark.parametrize(
    "mode,matmul,cudnn", [("conv", False, True), ("all", True, True), ("none", False, False)]
)
def test_tf32_modes_set_torch_flags(tf32_flags, mode, matmul, cudnn):
    assert hardware.set_tf32(mode) == {"matmul": matmul, "cudnn": cudnn}
    assert tf32_flags.cuda.matmul.allow_tf32 is matmul and tf32_flags.cudnn.allow_tf32 is cudnn


def test_tf32_defaults_to_torch_own_default_and_rejects_others(tf32_flags):
    """Default ``conv``: what PyTorch does by itself since 1.12 (convolutions TF32, matrix
    products IEEE float32) -- the process's untouched flags here."""
    cfg = load_config(REPO_ROOT / "config.yaml")
    assert resolve(cfg, "audiontt", "baseline", 0).pretrain["tf32"] == "conv"
    assert (tf32_flags.cuda.matmul.allow_tf32, tf32_flags.cudnn.allow_tf32) == (False, True)
    with pytest.raises(ValueError, match="pretrain.tf32 must be one of"):
        hardware.set_tf32("tf32")


def test_evaluations_run_in_exact_float32_without_autotuning(tf32_flags):
    """A probe during training (whole clips of many lengths) runs with cuDNN autotuning off and
    no TF32, then the run's own flags are back."""
    hardware.set_tf32("all")
    tf32_flags.cudnn.benchmark = True
    with hardware.exact_float32():
        assert not tf32_flags.cudnn.benchmark
        assert not tf32_flags.cuda.matmul.allow_tf32 and not tf32_flags.cudnn.allow_tf32
    assert tf32_flags.cudnn.benchmark and tf32_flags.cuda.matmul.allow_tf32
    with pytest.raises(RuntimeError), hardware.exact_float32():
        raise RuntimeError("a failing probe")
    assert tf32_flags.cudnn.benchmark and tf32_flags.cudnn.allow_tf32
