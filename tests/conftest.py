import os

# Small ops on a 2-core box: pin threads so OpenMP spin-wait does not dominate.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs single-threaded unless it sets threads itself (restored afterwards)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def pytest_collection_modifyitems(config, items):
    """The GPU suite (tests/gpu, marked ``cuda``) runs on the GPU where there is one, else on the
    CPU (``ABT_TEST_DEVICE=cpu``, the default without a GPU). Tests also marked ``cuda_device``
    need a real GPU: skipped, with the reason, where none is present or the CPU is asked for."""
    if torch.cuda.is_available() and os.environ.get("ABT_TEST_DEVICE", "cuda") == "cuda":
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: run tests/gpu on a GPU machine (README)")
    for item in items:
        if "cuda_device" in item.keywords:
            item.add_marker(skip)
