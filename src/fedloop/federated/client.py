"""The client side: train a model adapter on local data when the coordinator asks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.federated.messages import FitIns, FitRes
from fedloop.learn.adapters.base import ModelAdapter

__all__ = ["AdapterClient", "Client", "client_seed"]


def client_seed(seed: int, round_num: int, client_id: str) -> int:
    """Derive the training seed of one client in one round (stable across processes).

    Parameters
    ----------
    seed : int
        The run's seed.
    round_num : int
        Round number.
    client_id : str
        Client id.

    Returns
    -------
    int
        A 32-bit seed that depends on all three.
    """
    entropy = [seed, round_num, *client_id.encode()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@runtime_checkable
class Client(Protocol):
    """Anything that can train on request."""

    def fit(self, ins: FitIns) -> FitRes:
        """Train from the given global model and return the result."""
        ...


class AdapterClient:
    """A client that trains a fresh model adapter on its local data each round.

    A fresh adapter per round (seeded from the run seed, the round and the client id) keeps
    local training deterministic and memory bounded: many virtual clients can share a process.

    Parameters
    ----------
    client_id : str
        This client's id.
    adapter_factory : callable
        ``adapter_factory(seed) -> ModelAdapter``.
    x, y : ndarray
        Local training data (never leaves this object).
    seed : int, default 0
        The run seed.
    """

    def __init__(
        self,
        client_id: str,
        adapter_factory: Callable[[int], ModelAdapter],
        x: npt.NDArray[np.floating],
        y: npt.NDArray[np.generic],
        *,
        seed: int = 0,
    ) -> None:
        if len(x) != len(y):
            raise InvalidInput(
                f"client {client_id!r}: x has {len(x)} rows but y has {len(y)}.", field="y"
            )
        self.client_id = client_id
        self.adapter_factory = adapter_factory
        self.x = x
        self.y = y
        self.seed = seed

    def fit(self, ins: FitIns) -> FitRes:
        """Train ``local_epochs`` on local data starting from the global model."""
        started = time.perf_counter()
        adapter = self.adapter_factory(client_seed(self.seed, ins.round_num, self.client_id))
        adapter.set_parameters(ins.parameters)
        epochs = int(ins.config.get("local_epochs", 1))
        mu = float(ins.config.get("proximal_mu", 0.0))
        metrics = adapter.fit(self.x, self.y, epochs=epochs, proximal_mu=mu)
        metrics = {**metrics, "train_seconds": time.perf_counter() - started}
        return FitRes(
            parameters=adapter.get_parameters(),
            num_examples=len(self.y),
            metrics={k: float(v) for k, v in metrics.items()},
            round_num=ins.round_num,
        )
