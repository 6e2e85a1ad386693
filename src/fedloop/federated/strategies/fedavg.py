"""FedAvg: the example-weighted average of client models (McMahan et al., 2017)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

from fedloop.core import Parameters
from fedloop.federated.strategies._util import (
    _cast_like,
    _check_updates,
    _example_weights,
    _mean_from_sum,
    _weighted_mean,
)
from fedloop.federated.strategies.base import ClientUpdate, SecureSum, Strategy

__all__ = ["FedAvg"]


class FedAvg(Strategy):
    """Federated averaging: the next model is the example-weighted mean of the client models.

    Each tensor is accumulated in float64 with weights ``num_examples / sum(num_examples)`` and
    cast back to its dtype. Integer tensors (a BatchNorm ``num_batches_tracked`` counter) get
    the weighted average rounded to the nearest integer (ties to even) and boolean tensors the
    weighted majority, so every tensor is averaged by the same rule and one client's model comes
    back unchanged. The result does not depend on the order of the updates.

    Examples
    --------
    >>> from collections import OrderedDict
    >>> import numpy as np
    >>> from fedloop.federated.strategies import ClientUpdate, FedAvg
    >>> updates = [
    ...     ClientUpdate("a", OrderedDict(w=np.array([1.0, 2.0])), num_examples=1),
    ...     ClientUpdate("b", OrderedDict(w=np.array([3.0, 4.0])), num_examples=3),
    ... ]
    >>> FedAvg().aggregate_train(1, OrderedDict(w=np.zeros(2)), updates)["w"]
    array([2.5, 3.5])
    """

    name: ClassVar[str] = "fedavg"
    secure_weighting: ClassVar[str | None] = "examples"

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``{}``."""
        return {}

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the example-weighted average of the client models.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model the clients started from; fixes names, shapes and dtypes.
        updates : sequence of ClientUpdate
            The clients' full models and example counts.

        Returns
        -------
        OrderedDict[str, ndarray]
            The average, in the tensor order and dtypes of ``current``.

        Raises
        ------
        AggregationError
            When there are no updates, an update does not match ``current`` or every update
            reports 0 examples.
        """
        ordered = _check_updates(current, updates)
        averaged = _weighted_mean([u.parameters for u in ordered], _example_weights(ordered))
        return OrderedDict((name, averaged[name]) for name in current)

    def aggregate_secure(self, round_num: int, current: Parameters, total: SecureSum) -> Parameters:
        """Return the example-weighted average from its secure sum (the same rule, summed).

        Raises
        ------
        AggregationError
            When the sum does not match ``current`` or its weights sum to zero.
        """
        mean = _mean_from_sum(current, total)
        return OrderedDict((name, _cast_like(mean[name], a.dtype)) for name, a in current.items())
