"""The client side: train a model adapter on local data when the coordinator asks."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, Parameters
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.secagg.participant import SECURE_TASK, answer_secure_task
from fedloop.learn import (
    columns_from_tensors,
    profile_columns,
    profile_to_arrays,
    quantile_sketch,
)
from fedloop.learn.adapters.base import ModelAdapter

__all__ = [
    "EDGES_PREFIX",
    "PROFILE_TASK",
    "AdapterClient",
    "Client",
    "ProfilingClient",
    "client_seed",
    "run_task",
    "split_profile_parameters",
]

#: ``FitIns.config["task"]`` of a profiling task (see :mod:`fedloop.federated.profiling`).
PROFILE_TASK = "profile"

#: Tensor-name prefix of the bin edges sent with the ``counts`` phase (beside the model).
EDGES_PREFIX = "__edges__/"


def split_profile_parameters(params: Parameters) -> tuple[Parameters, dict[str, np.ndarray]]:
    """Split a profiling task's tensors into the model's parameters and the bin edges."""
    model: Parameters = OrderedDict()
    edges: dict[str, np.ndarray] = {}
    for name, array in params.items():
        if name.startswith(EDGES_PREFIX):
            edges[name[len(EDGES_PREFIX) :]] = array
        else:
            model[name] = array
    return model, edges


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


@runtime_checkable
class ProfilingClient(Protocol):
    """A client that can also summarise its local data for the model's reference profile."""

    def fit(self, ins: FitIns) -> FitRes:
        """Train from the given global model and return the result."""
        ...

    def profile(self, ins: FitIns) -> FitRes:
        """Answer a profiling task: summaries of local data as tensors, never rows."""
        ...


def run_task(client: Client, ins: FitIns) -> FitRes:
    """Run the task ``ins`` asks for: a profiling task or (by default) training.

    Every client host (in-process, process pool, Ray actor, HTTP client) answers through this
    one function, so a client that cannot profile refuses the task instead of training, and
    the stages of secure aggregation work alike over every transport.

    Raises
    ------
    InvalidInput
        When a profiling task reaches a client without a ``profile`` method.
    """
    if ins.config.get("task") == SECURE_TASK:
        return answer_secure_task(client.fit, ins)
    if ins.config.get("task") == PROFILE_TASK:
        profile = getattr(client, "profile", None)
        if profile is None:
            raise InvalidInput(
                f"{type(client).__name__} cannot answer a profiling task.",
                field="task",
                value=PROFILE_TASK,
                hint="Give the client a profile(ins) method (AdapterClient has one).",
            )
        result: FitRes = profile(ins)
        return result
    return client.fit(ins)


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

    def profile(self, ins: FitIns) -> FitRes:
        """Summarise local features and the global model's scores on them (no row leaves).

        Phase ``sketch`` answers per-column quantile sketches; phase ``counts`` answers the
        exact profile on the edges the coordinator derived from everyone's sketches (see
        :func:`fedloop.federated.profiling.collect_profile`).
        """
        model, edges = split_profile_parameters(ins.parameters)
        adapter = self.adapter_factory(client_seed(self.seed, ins.round_num, self.client_id))
        adapter.set_parameters(model)
        columns = columns_from_tensors(
            {
                str(ins.config["input"]): self.x,
                str(ins.config["output"]): adapter.predict_proba(self.x),
            }
        )
        arrays: Parameters = OrderedDict()
        if ins.config.get("phase") == "sketch":
            num_points = int(ins.config.get("num_points", 256))
            arrays.update(quantile_sketch(columns, num_points=num_points))
        else:
            arrays.update(profile_to_arrays(profile_columns(columns, edges=edges)))
        return FitRes(parameters=arrays, num_examples=len(self.y), round_num=ins.round_num)
