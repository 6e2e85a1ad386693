"""Client-update clipping for DP-FedAvg: fixed L2 clipping and adaptive quantile clipping."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput

__all__ = [
    "clip_update",
    "noisy_unclipped_fraction",
    "split_noise_multiplier",
    "update_clip_norm",
    "update_norm",
]

Delta = OrderedDict[str, npt.NDArray[np.float64]]


def update_norm(delta: Delta) -> float:
    """Return the global L2 norm of an update (all its tensors taken as one vector).

    Parameters
    ----------
    delta : OrderedDict[str, ndarray]
        A client's model minus the global model, floating tensors only.

    Returns
    -------
    float
        ``sqrt(sum of squares)`` over every tensor; 0 for an empty update.
    """
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in delta.values()))


def clip_update(delta: Delta, clip_norm: float) -> tuple[Delta, float]:
    """Scale an update down so that its global L2 norm is at most ``clip_norm``.

    Parameters
    ----------
    delta : OrderedDict[str, ndarray]
        A client's model minus the global model, floating tensors only.
    clip_norm : float
        The bound ``C > 0``.

    Returns
    -------
    clipped : OrderedDict[str, ndarray]
        ``delta * min(1, C / ||delta||)`` in float64 (unchanged when already within the bound).
    norm : float
        ``||delta||`` before clipping.
    """
    norm = update_norm(delta)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    clipped: Delta = OrderedDict((k, a.astype(np.float64) * scale) for k, a in delta.items())
    return clipped, norm


def noisy_unclipped_fraction(
    unclipped: float,
    *,
    count_stddev: float,
    num_expected: float,
    rng: np.random.Generator,
) -> float:
    """Return the privatized fraction of clients whose update was not clipped.

    Each client contributes the bit ``||delta_i|| <= C``; their sum gets Gaussian noise of
    standard deviation ``count_stddev`` and is divided by the expected number of clients
    (Andrew et al., 2021, Algorithm 1).

    Parameters
    ----------
    unclipped : float
        How many clients' updates were within the clip norm (the sum of their bits, which
        secure aggregation can compute without revealing any one bit).
    count_stddev : float
        ``sigma_b``, the noise on the count (0 for none).
    num_expected : float
        The denominator: the expected number of clients per round.
    rng : numpy.random.Generator
        Source of the noise.

    Returns
    -------
    float
        The noisy fraction (may fall outside [0, 1]).
    """
    noise = float(rng.normal(0.0, count_stddev)) if count_stddev > 0 else 0.0
    return (float(unclipped) + noise) / num_expected


def update_clip_norm(
    clip_norm: float, unclipped_fraction: float, *, target_quantile: float, learning_rate: float
) -> float:
    """Move the clip norm geometrically toward the target quantile of the update norms.

    ``C <- C * exp(-eta * (b - gamma))``: when more than ``gamma`` of the clients were within
    the bound the norm shrinks, when fewer it grows (Andrew et al., 2021, eq. 3).

    Parameters
    ----------
    clip_norm : float
        The current clip norm.
    unclipped_fraction : float
        ``b``, the (noisy) fraction of unclipped clients this round.
    target_quantile : float
        ``gamma`` in [0, 1].
    learning_rate : float
        ``eta > 0``.

    Returns
    -------
    float
        The next clip norm.
    """
    return clip_norm * math.exp(-learning_rate * (unclipped_fraction - target_quantile))


def split_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """Return the noise multiplier left for the model update when the count is noised too.

    The clipped-count query has sensitivity 1/2 after centring, so it is a Gaussian mechanism
    with multiplier ``2 * sigma_b``; composing both at multipliers ``z_delta`` and
    ``2 * sigma_b`` costs what one mechanism at ``z`` costs when
    ``z**-2 = z_delta**-2 + (2 * sigma_b)**-2`` (Andrew et al., 2021, Theorem 1).

    Parameters
    ----------
    noise_multiplier : float
        ``z``, the total multiplier the accountant charges.
    count_stddev : float
        ``sigma_b``; must exceed ``z / 2``.

    Returns
    -------
    float
        ``z_delta``, the multiplier for the model update.

    Raises
    ------
    InvalidInput
        When ``2 * sigma_b <= z`` (field ``strategy.clipped_count_stddev``).
    """
    if noise_multiplier == 0:
        return 0.0
    if 2 * count_stddev <= noise_multiplier:
        raise InvalidInput(
            f"`strategy.clipped_count_stddev` must exceed noise_multiplier / 2 = "
            f"{noise_multiplier / 2:g} with adaptive clipping; got {count_stddev:g}.",
            field="strategy.clipped_count_stddev",
            value=count_stddev,
            hint="Raise clipped_count_stddev (Andrew et al. use expected clients / 20) "
            "or lower noise_multiplier.",
        )
    return float((noise_multiplier**-2 - (2 * count_stddev) ** -2) ** -0.5)
