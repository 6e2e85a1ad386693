"""Byzantine-robust rules: coordinate median, trimmed mean, Krum and Multi-Krum."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, Parameters
from fedloop.federated.strategies._util import (
    _cast_like,
    _check_int,
    _check_number,
    _check_updates,
    _copy,
    _example_weights,
    _flat_floats,
    _stack,
    _weighted_mean,
)
from fedloop.federated.strategies.base import ClientUpdate, Strategy

__all__ = ["CoordinateMedian", "Krum", "MultiKrum", "TrimmedMean"]


class CoordinateMedian(Strategy):
    """Coordinate-wise median of the client models (Yin et al., 2018), unweighted.

    With an even number of clients the median of a coordinate is the mean of its two middle
    values; integer and boolean tensors are then rounded (ties to even).
    """

    name: ClassVar[str] = "median"

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the element-wise median of the client models.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model; fixes names, shapes and dtypes.
        updates : sequence of ClientUpdate
            The clients' full models (example counts are ignored).

        Returns
        -------
        OrderedDict[str, ndarray]
            The median per coordinate, in ``current``'s order and dtypes.

        Raises
        ------
        AggregationError
            When there are no updates or an update does not match ``current``.
        """
        ordered = _check_updates(current, updates)
        return OrderedDict(
            (name, _cast_like(np.median(_stack(ordered, name), axis=0), ref.dtype))
            for name, ref in current.items()
        )


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean (Yin et al., 2018), unweighted.

    For ``n`` updates, ``k = floor(beta * n)`` of the largest and ``k`` of the smallest values
    of every coordinate are dropped and the remaining ``n - 2k`` are averaged.

    Parameters
    ----------
    beta : float
        Fraction trimmed at each end, in ``[0, 0.5)``; ``0`` is the plain (unweighted) mean.

    Raises
    ------
    InvalidInput
        When ``beta`` is not in ``[0, 0.5)`` (field ``strategy.beta``).
    """

    name: ClassVar[str] = "trimmed_mean"

    def __init__(self, beta: float) -> None:
        _check_number(beta, field="beta", low=0.0, high=0.5)
        self.beta = beta

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``{"beta": ...}`` as given."""
        return {"beta": self.beta}

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the per-coordinate mean after trimming ``floor(beta * n)`` values at each end.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model; fixes names, shapes and dtypes.
        updates : sequence of ClientUpdate
            The clients' full models (example counts are ignored).

        Returns
        -------
        OrderedDict[str, ndarray]
            The trimmed mean per coordinate, in ``current``'s order and dtypes.

        Raises
        ------
        AggregationError
            When there are no updates or an update does not match ``current``.
        """
        ordered = _check_updates(current, updates)
        n = len(ordered)
        # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 from trimming 28 instead of 29.
        k = math.floor(float(self.beta) * n + 1e-9)
        out: Parameters = OrderedDict()
        for name, ref in current.items():
            kept = np.sort(_stack(ordered, name), axis=0)[k : n - k]
            out[name] = _cast_like(kept.mean(axis=0), ref.dtype)
        return out


def _krum_scores(updates: Sequence[ClientUpdate], num_byzantine: int) -> npt.NDArray[np.float64]:
    """Return each update's Krum score (Blanchard et al., 2017).

    The score of update ``i`` is the sum of the squared L2 distances, over the concatenation
    of all floating tensors, to its ``n - f - 2`` nearest other updates.

    Raises
    ------
    AggregationError
        When ``n < 2f + 3`` (field ``strategy.num_byzantine``).
    """
    n = len(updates)
    if n < 2 * num_byzantine + 3:
        raise AggregationError(
            f"Krum with `strategy.num_byzantine` = {num_byzantine} needs at least "
            f"{2 * num_byzantine + 3} updates (n >= 2f + 3); got {n}.",
            field="strategy.num_byzantine",
            value=num_byzantine,
            hint="Select more clients per round (and raise federated.min_clients to match) "
            "or lower num_byzantine.",
        )
    vectors = np.stack([_flat_floats(u.parameters) for u in updates])
    nearest = n - num_byzantine - 2
    scores = np.empty(n, dtype=np.float64)
    for i in range(n):
        distances = np.sum(np.square(vectors - vectors[i]), axis=1)
        scores[i] = np.sort(np.delete(distances, i))[:nearest].sum()
    return scores


class Krum(Strategy):
    """Krum (Blanchard et al., 2017): the one client model closest to its neighbours.

    Each of the ``n`` updates is scored by the sum of squared distances to its ``n - f - 2``
    nearest others, and the model with the lowest score is returned unchanged (ties go to
    the lowest ``client_id``). Tolerates ``f`` Byzantine clients when ``n >= 2f + 3``.

    Parameters
    ----------
    num_byzantine : int
        ``f``, the number of Byzantine clients to tolerate, ``>= 0``.

    Raises
    ------
    InvalidInput
        When ``num_byzantine`` is not an integer ``>= 0`` (field ``strategy.num_byzantine``).
    """

    name: ClassVar[str] = "krum"

    def __init__(self, num_byzantine: int) -> None:
        _check_int(num_byzantine, field="num_byzantine", low=0)
        self.num_byzantine = num_byzantine

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``{"num_byzantine": ...}`` as given."""
        return {"num_byzantine": self.num_byzantine}

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return a copy of the client model with the lowest Krum score.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model; fixes names, shapes and dtypes.
        updates : sequence of ClientUpdate
            The clients' full models (example counts are ignored).

        Returns
        -------
        OrderedDict[str, ndarray]
            The chosen client's parameters, in ``current``'s order.

        Raises
        ------
        AggregationError
            When there are no updates, an update does not match ``current`` or there are
            fewer than ``2 * num_byzantine + 3`` updates.
        """
        ordered = _check_updates(current, updates)
        chosen = ordered[int(np.argmin(_krum_scores(ordered, int(self.num_byzantine))))]
        return _copy(OrderedDict((name, chosen.parameters[name]) for name in current))


class MultiKrum(Strategy):
    """Multi-Krum (Blanchard et al., 2017): average the ``m`` models with the best Krum scores.

    Scores are computed once over all ``n`` updates (as in :class:`Krum`); the ``m`` lowest
    (ties to the lower ``client_id``) are kept and averaged weighted by ``num_examples``, as
    FedAvg would. ``m = 1`` is Krum.

    Parameters
    ----------
    num_byzantine : int
        ``f``, the number of Byzantine clients to tolerate, ``>= 0``.
    num_selected : int
        ``m``, how many models to average, ``>= 1``; at aggregation it must be ``<= n - f``.

    Raises
    ------
    InvalidInput
        When a parameter is not an integer in range (field ``strategy.<name>``).
    """

    name: ClassVar[str] = "multikrum"

    def __init__(self, num_byzantine: int, num_selected: int) -> None:
        _check_int(num_byzantine, field="num_byzantine", low=0)
        _check_int(num_selected, field="num_selected", low=1)
        self.num_byzantine = num_byzantine
        self.num_selected = num_selected

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments ``num_byzantine`` and ``num_selected`` as given."""
        return {"num_byzantine": self.num_byzantine, "num_selected": self.num_selected}

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the example-weighted average of the ``num_selected`` best-scored models.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model; fixes names, shapes and dtypes.
        updates : sequence of ClientUpdate
            The clients' full models and example counts.

        Returns
        -------
        OrderedDict[str, ndarray]
            The average, in ``current``'s order and dtypes.

        Raises
        ------
        AggregationError
            When there are no updates, an update does not match ``current``, there are fewer
            than ``2 * num_byzantine + 3`` updates, ``num_selected > n - num_byzantine`` or
            the selected updates report 0 examples.
        """
        ordered = _check_updates(current, updates)
        scores = _krum_scores(ordered, int(self.num_byzantine))
        limit = len(ordered) - int(self.num_byzantine)
        if self.num_selected > limit:
            raise AggregationError(
                f"Multi-Krum cannot select `strategy.num_selected` = {self.num_selected} of "
                f"{len(ordered)} updates with num_byzantine = {self.num_byzantine}; "
                f"at most n - f = {limit}.",
                field="strategy.num_selected",
                value=self.num_selected,
                hint="Lower num_selected or select more clients per round.",
            )
        best = [ordered[i] for i in np.argsort(scores, kind="stable")[: int(self.num_selected)]]
        averaged = _weighted_mean([u.parameters for u in best], _example_weights(best))
        return OrderedDict((name, averaged[name]) for name in current)
