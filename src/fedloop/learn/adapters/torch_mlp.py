"""``mlp_adapter``: a TorchAdapter over the benchmark MLP, built from JSON-able values by name."""

from __future__ import annotations

from collections.abc import Sequence

from fedloop.learn.adapters.torch import TorchAdapter, mlp

__all__ = ["mlp_adapter"]


def mlp_adapter(
    num_features: int,
    hidden: Sequence[int] = (64, 32),
    *,
    lr: float = 0.05,
    optimizer: str = "sgd",
    batch_size: int = 64,
    seed: int = 0,
) -> TorchAdapter:
    """Build a :class:`TorchAdapter` over :func:`mlp` from plain values (a factory by name).

    Workers that import a model factory by dotted name (``fedloop.learn:mlp_adapter``) and
    call it with JSON keyword arguments use this one for the benchmark MLP.

    Parameters
    ----------
    num_features : int
        Input width.
    hidden : sequence of int, default (64, 32)
        Hidden layer widths.
    lr, optimizer, batch_size, seed
        As :class:`TorchAdapter`.

    Returns
    -------
    TorchAdapter
        Seeded: equal arguments give equal initial weights.
    """
    widths = tuple(int(h) for h in hidden)
    return TorchAdapter(
        lambda: mlp(num_features, widths),
        num_features=num_features,
        lr=lr,
        optimizer=optimizer,
        batch_size=batch_size,
        seed=seed,
    )
