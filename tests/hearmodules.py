"""Tiny HEAR modules a user might bring, and the wheel ``pip wheel`` would make of them (the
measured references' tests: by hand and through the workflow)."""

import base64
import hashlib
import zipfile
from pathlib import Path

#: tiny HEAR modules a user might bring: one that works, and one of each kind of failure
GOOD = """
import torch
class M(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = timestamp_embedding_size = 3
    def forward(self, x):
        return x
def load_model(model_file_path=""):
    return M()
def get_timestamp_embeddings(audio, model):
    hop = 800
    n = audio.shape[1] // hop + 1
    frames = torch.stack([audio[:, max(0, i * hop - hop // 2):i * hop + hop // 2 + 1].mean(1)
                          for i in range(n)], 1)
    emb = torch.stack([frames, frames.abs(), frames ** 2], -1).float()
    ts = torch.arange(n, dtype=torch.float32) * 50.0
    return emb, ts.expand(audio.shape[0], n)
def get_scene_embeddings(audio, model):
    e, _ = get_timestamp_embeddings(audio, model)
    return torch.cat([audio.std(1, keepdim=True), audio.abs().mean(1, keepdim=True),
                      (audio ** 2).mean(1, keepdim=True)], 1).float()
"""
MODULES = {
    "byo_good": GOOD,
    "byo_noimport": "import no_such_package_for_abt_tests\n",
    "byo_badrate": GOOD.replace("sample_rate = 16000", "sample_rate = 8000"),
    "byo_floatrate": GOOD.replace("sample_rate = 16000", "sample_rate = 16000.0"),
    "byo_nan": GOOD + "\n_orig = get_scene_embeddings\n"
    "def get_scene_embeddings(audio, model):\n    return _orig(audio, model) * float('nan')\n",
}


def make_wheel(folder: Path, modules: dict[str, str], name="abt_test_modules", version="1.0"):
    """A wheel holding ``modules`` (what ``pip wheel`` of a user's module would give)."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{m}.py": src.encode() for m, src in modules.items()}
    files[f"{dist}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    files[f"{dist}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: abt-tests\nRoot-Is-Purelib: true\n" \
        b"Tag: py3-none-any\n"  # fmt: skip

    def digest(b: bytes) -> str:
        return (
            "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
        )

    record = "".join(f"{p},{digest(b)},{len(b)}\n" for p, b in files.items()) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, b in files.items():
            z.writestr(p, b)
        z.writestr(f"{dist}/RECORD", record)
    return path
