"""The ``Strategy`` interface: how a federated round is configured and how updates are combined."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, ConfigError, Parameters

__all__ = ["ClientUpdate", "SecureSum", "Strategy", "weighted_average"]


@dataclass(frozen=True)
class ClientUpdate:
    """What one client sent back after local training.

    Attributes
    ----------
    client_id : str
        Who sent it.
    parameters : Parameters
        The client's model after local training (full weights, not a delta).
    num_examples : int
        Examples it trained on (the FedAvg weight).
    metrics : dict
        Training metrics it reported (``loss``…).
    base_round : int
        The round whose global model the client started from (for staleness in async rules).
    """

    client_id: str
    parameters: Parameters
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    base_round: int = 0


@dataclass(frozen=True)
class SecureSum:
    """All that secure aggregation reveals of one round: sums over the surviving clients.

    Attributes
    ----------
    delta_sum : Parameters
        ``sum_i w_i * (x_i - x)`` per tensor, in float64 (``x_i`` client ``i``'s model after
        training, ``x`` the global model it started from; clipped first when the rule asks
        clients to clip).
    weight_sum : float
        ``sum_i w_i``: examples for example-weighted rules, the number of clients otherwise.
    count : int
        How many clients are in the sum.
    unclipped : float
        How many clients' updates were within the clip norm (``count`` without clipping).
    """

    delta_sum: Parameters
    weight_sum: float
    count: int
    unclipped: float


def weighted_average(tensors: Sequence[Parameters], weights: Sequence[float]) -> Parameters:
    """Average parameter maps with weights, in float64, cast back to each tensor's dtype.

    Parameters
    ----------
    tensors : sequence of OrderedDict[str, ndarray]
        Same names, shapes and dtypes in each.
    weights : sequence of float
        Non-negative, not all zero.

    Returns
    -------
    OrderedDict[str, ndarray]
        ``sum_i w_i * t_i / sum_i w_i`` per tensor.

    Raises
    ------
    AggregationError
        When there is nothing to average or the weights sum to zero.
    """
    if not tensors:
        raise AggregationError("no updates to aggregate.", field="updates")
    total = float(sum(weights))
    if total <= 0:
        raise AggregationError(
            "the aggregation weights sum to zero (every update reported 0 examples).",
            field="num_examples",
        )
    out: Parameters = OrderedDict()
    for name, first in tensors[0].items():
        acc = np.zeros(first.shape, dtype=np.float64)
        for params, w in zip(tensors, weights, strict=True):
            acc += params[name].astype(np.float64) * (w / total)
        out[name] = acc.astype(first.dtype)
    return out


class Strategy(ABC):
    """Base class of aggregation rules.

    A strategy is configured by constructor arguments (stored unchanged and returned by
    :meth:`get_params`, which goes into the run record), may hold server-side state (an
    optimizer's moments, an async buffer) that :meth:`state_dict` / :meth:`load_state_dict`
    checkpoint, and turns client updates into the next global model. Updates arrive sorted by
    ``client_id`` so that results are deterministic.

    Subclasses set ``name`` and implement :meth:`aggregate_train`; they may override
    :meth:`configure_train` to send settings to clients (FedProx's ``proximal_mu``).
    """

    name: ClassVar[str] = "strategy"
    #: True for rules that aggregate as updates arrive rather than per synchronous round.
    asynchronous: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-ready) for the run record."""
        return {}

    def initialize(self, parameters: Parameters) -> None:  # noqa: B027 - optional hook
        """Prepare server-side state for a model of this shape (called once per run)."""

    def configure_train(self, round_num: int) -> dict[str, Any]:
        """Return the settings sent to every selected client for this round."""
        return {}

    @abstractmethod
    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the next global model from the current one and this round's updates.

        Raises
        ------
        AggregationError
            When the updates cannot be combined.
        """

    # -- secure aggregation ------------------------------------------------------------------
    #: How each client weights its update under secure aggregation: ``"examples"`` (FedAvg's
    #: ``n_i``) or ``"uniform"``; None for rules that need every update on its own (robust
    #: and asynchronous rules), which cannot run with secure aggregation.
    secure_weighting: ClassVar[str | None] = None

    def check_secure(self) -> None:
        """Raise ConfigError unless this rule can aggregate sums (secure aggregation)."""
        if self.secure_weighting is None:
            raise ConfigError(
                f"strategy {self.name!r} needs every client's update on its own, so it cannot "
                "run with secure aggregation (the coordinator only sees the sum).",
                field="federated.secure_aggregation.enabled",
                value=True,
                hint="Use fedavg, fedprox, fedadam, fedyogi, fedadagrad or dpfedavg with "
                "secure aggregation, or turn secure aggregation off.",
            )

    def secure_client_settings(self, round_num: int) -> dict[str, Any]:
        """Return what clients apply to their update before masking it (e.g. a clip norm)."""
        return {}

    def aggregate_secure(self, round_num: int, current: Parameters, total: SecureSum) -> Parameters:
        """Return the next global model from the sum of this round's weighted updates.

        Raises
        ------
        ConfigError
            For a rule that cannot aggregate sums.
        AggregationError
            When the sum does not match ``current`` or its weights sum to zero.
        """
        self.check_secure()
        raise NotImplementedError(
            f"{type(self).__name__} sets secure_weighting but does not implement aggregate_secure."
        )

    def state_dict(self) -> dict[str, npt.NDArray[np.generic]]:
        """Return server-side state as named arrays (checkpointed with the model)."""
        return {}

    def round_metrics(self) -> dict[str, float]:
        """Return metrics of the strategy after a round (recorded with the round's metrics)."""
        return {}

    def load_state_dict(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:  # noqa: B027
        """Restore what :meth:`state_dict` returned."""
