"""A stand-in for ``torchaudio`` in the HEAR evaluation venv, found only when none is installed.

``hear_compat`` appends this folder's parent to the *end* of ``sys.path``, so a real torchaudio
(a user's HEAR module may install one) always wins. torchcrepe 0.0.24 imports torchaudio at module
level for ``torchcrepe.load.audio`` (reading audio files), which the HEAR 2021 wrapper
``hearbaseline.torchcrepe`` never calls: the kit hands it the audio. No torchaudio release exists
for torch 2.13, so none is installed; every use of this stand-in raises.
"""

from __future__ import annotations

from _abt_stub import getattr_raising, unavailable

__version__ = "0.0.0+abt.stand-in"
ABT_STUB = True

_unavailable = unavailable(
    "torchaudio is a stand-in in the abt HEAR evaluation venv (no release exists for its "
    "torch); install a torchaudio that matches torch into the venv to use it"
)
load = _unavailable
save = _unavailable
info = _unavailable
__getattr__ = getattr_raising(_unavailable)
