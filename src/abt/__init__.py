"""Audio Barlow Twins (ABT), reproduced end to end.

Modules mirror the paper (thesis chapter 3 / §4.1):

- :mod:`abt.data` — audio loading, log-mel front-end, packed mel store, embedded data set
- :mod:`abt.augment` — the audio augmentation (AA) module, batched (§3.2)
- :mod:`abt.encoders` — AudioNTT, ResNet-18 (+ReGP NRF), ViT and ViT_C (§3.3)
- :mod:`abt.objective` — projector and Barlow Twins objective (§3.1)
- :mod:`abt.optim` — LARS / AdamW and the warm-up + cosine schedule (§4.1)
- :mod:`abt.trainer` — resumable pre-training on the mel store
"""

__version__ = "0.1.0"
