"""Client-level differential privacy: update clipping and the (epsilon, delta) accountant."""

from fedloop.federated.privacy.accountant import (
    CLIP_NORM_KEY,
    LEDGER_KEY,
    RDP_ORDERS,
    PrivacyAccountant,
    privacy_record,
)
from fedloop.federated.privacy.clipping import (
    clip_update,
    noisy_unclipped_fraction,
    split_noise_multiplier,
    update_clip_norm,
    update_norm,
)

__all__ = [
    "CLIP_NORM_KEY",
    "LEDGER_KEY",
    "RDP_ORDERS",
    "PrivacyAccountant",
    "clip_update",
    "noisy_unclipped_fraction",
    "privacy_record",
    "split_noise_multiplier",
    "update_clip_norm",
    "update_norm",
]
