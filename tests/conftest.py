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
    """Tests marked ``cuda`` (tests/gpu) are skipped, with the reason, where no GPU is present."""
    if torch.cuda.is_available() or os.environ.get("ABT_TEST_DEVICE") == "cpu":
        return  # ABT_TEST_DEVICE=cpu: a CPU dry run of the GPU suite's logic
    skip = pytest.mark.skip(reason="no CUDA device: run tests/gpu on a GPU machine (README)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
