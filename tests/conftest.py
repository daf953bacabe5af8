import os

# Small ops on a 2-core box: pin threads so OpenMP spin-wait does not dominate.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
