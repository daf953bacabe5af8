"""Encoders (thesis §3.3): AudioNTT, ResNet-18 (+ReGP NRF), ViT and ViT_C; beyond the thesis
(its §5): the larger ViT_C-L/H and CvT-13/21 (docs/fidelity.md, "Beyond the thesis").

Registry names: ``audiontt``, ``resnet18``, ``resnet18_regp_nrf``, ``vit_t``, ``vit_s``, ``vit_b``,
``vitc_t``, ``vitc_s``, ``vitc_b``, ``vitc_l``, ``vitc_h``, ``cvt_13``, ``cvt_21``. Build with
:func:`build_encoder`; every encoder maps ``(B, 1, n_mels, T)`` to ``(B, embed_dim)`` via
``forward(x, mask_ratio=0.0)``.
"""

from abt.encoders import audiontt, cvt, resnet, vit  # noqa: F401  (registers the encoders)
from abt.encoders.base import ENCODERS, Encoder, build_encoder, build_encoder_from_spec
from abt.encoders.masking import MASK_SCHEDULES, fixed_mask_ratio, mask_ratio_schedule
from abt.encoders.vit import PATCH_SIZES, POS_EMBEDS

__all__ = [
    "ENCODERS",
    "MASK_SCHEDULES",
    "PATCH_SIZES",
    "POS_EMBEDS",
    "Encoder",
    "build_encoder",
    "build_encoder_from_spec",
    "fixed_mask_ratio",
    "mask_ratio_schedule",
]
