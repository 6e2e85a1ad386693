"""Adaptive server optimizers FedAdam, FedYogi and FedAdagrad (Reddi et al., ICLR 2021)."""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, InvalidInput, Parameters
from fedloop.federated.strategies._util import (
    _cast_like,
    _check_number,
    _check_updates,
    _counter,
    _example_weights,
    _is_float,
    _mean_from_sum,
    _prefixed,
    _scalar,
    _weighted_mean,
)
from fedloop.federated.strategies.base import ClientUpdate, SecureSum, Strategy

__all__ = ["FedAdagrad", "FedAdam", "FedYogi"]

_Arrays = dict[str, npt.NDArray[np.float64]]


class _FedOpt(Strategy):
    """Shared server-optimizer loop of Algorithm 2 in "Adaptive Federated Optimization".

    Per floating tensor, with ``avg`` the example-weighted average of the client models:
    ``delta = avg - x``, ``m = beta_1 * m + (1 - beta_1) * delta``, ``v`` by the subclass's
    rule and ``x = x + eta * m / (sqrt(v) + tau)``, all in float64. There is no bias
    correction (the paper has none). ``m`` starts at 0 and ``v`` at ``tau ** 2``
    (the paper's ``v_{-1} >= tau^2``). Integer and boolean tensors are not optimized: they
    take the rounded example-weighted average, as in :class:`FedAvg`.
    """

    secure_weighting: ClassVar[str | None] = "examples"

    def __init__(self, eta: float, *, beta_1: float, tau: float) -> None:
        _check_number(eta, field="eta", low=0.0, low_open=True)
        _check_number(beta_1, field="beta_1", low=0.0, high=1.0)
        _check_number(tau, field="tau", low=0.0, low_open=True)
        self.eta = eta
        self.beta_1 = beta_1
        self.tau = tau
        self._m: _Arrays = {}
        self._v: _Arrays = {}
        self._step = 0
        self._ready = False

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``eta``, ``beta_1`` and ``tau``."""
        return {"eta": self.eta, "beta_1": self.beta_1, "tau": self.tau}

    def initialize(self, parameters: Parameters) -> None:
        """Reset the moments for a model of this shape: ``m = 0``, ``v = tau ** 2``.

        Parameters
        ----------
        parameters : OrderedDict[str, ndarray]
            The initial global model.
        """
        tau2 = float(self.tau) ** 2
        floats = [(n, a) for n, a in parameters.items() if _is_float(a)]
        self._m = {n: np.zeros(a.shape, dtype=np.float64) for n, a in floats}
        self._v = {n: np.full(a.shape, tau2, dtype=np.float64) for n, a in floats}
        self._step, self._ready = 0, True

    @abstractmethod
    def _second_moment(
        self, v: npt.NDArray[np.float64], delta: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Return the next ``v`` from the previous one and the pseudo-gradient."""

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Take one server-optimizer step along the averaged client change.

        Parameters
        ----------
        round_num : int
            The round being aggregated (unused).
        current : OrderedDict[str, ndarray]
            The global model ``x`` the clients started from.
        updates : sequence of ClientUpdate
            The clients' full models and example counts.

        Returns
        -------
        OrderedDict[str, ndarray]
            ``x + eta * m / (sqrt(v) + tau)`` per floating tensor, in ``current``'s dtypes.

        Raises
        ------
        AggregationError
            When there are no updates, an update or the optimizer state does not match
            ``current``, or every update reports 0 examples.
        """
        ordered = _check_updates(current, updates)
        average = _weighted_mean([u.parameters for u in ordered], _example_weights(ordered))
        return self._optimizer_step(current, average)

    def aggregate_secure(self, round_num: int, current: Parameters, total: SecureSum) -> Parameters:
        """Take the optimizer step along the example-weighted change given by its secure sum.

        Raises
        ------
        AggregationError
            When the sum or the optimizer state does not match ``current``.
        """
        mean = _mean_from_sum(current, total)
        average = OrderedDict(
            (name, mean[name] if _is_float(a) else _cast_like(mean[name], a.dtype))
            for name, a in current.items()
        )
        return self._optimizer_step(current, average)

    def _optimizer_step(self, current: Parameters, average: Parameters) -> Parameters:
        if not self._ready:
            self.initialize(current)
        self._check_state(current)
        new_m: _Arrays = {}
        new_v: _Arrays = {}
        out: Parameters = OrderedDict()
        for name, x in current.items():
            if name not in self._m:
                out[name] = average[name]
                continue
            x64 = x.astype(np.float64)
            delta = average[name].astype(np.float64) - x64
            new_m[name] = self.beta_1 * self._m[name] + (1.0 - self.beta_1) * delta
            new_v[name] = self._second_moment(self._v[name], delta)
            step = self.eta * new_m[name] / (np.sqrt(new_v[name]) + self.tau)
            out[name] = (x64 + step).astype(x.dtype)
        self._m, self._v, self._step = new_m, new_v, self._step + 1
        return out

    def _check_state(self, current: Parameters) -> None:
        floats = {n: a.shape for n, a in current.items() if _is_float(a)}
        held = {n: a.shape for n, a in self._m.items()}
        if held != floats or {n: a.shape for n, a in self._v.items()} != floats:
            raise AggregationError(
                f"the {self.name} moments were built for another model "
                f"(tensors {sorted(held)[:3]}…, the model has {sorted(floats)[:3]}…).",
                field="current",
                hint="Call initialize() with the new model, or load the matching state.",
            )

    def state_dict(self) -> dict[str, npt.NDArray[np.generic]]:
        """Return the moments and the step count.

        Returns
        -------
        dict[str, ndarray]
            ``step`` (int64, shape ``(1,)``), ``m.<tensor>`` and ``v.<tensor>`` (float64).
        """
        state: dict[str, npt.NDArray[np.generic]] = {"step": _counter(self._step)}
        for name in self._m:
            state[f"m.{name}"] = self._m[name].copy()
            state[f"v.{name}"] = self._v[name].copy()
        return state

    def load_state_dict(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Restore what :meth:`state_dict` returned, bit for bit.

        Parameters
        ----------
        state : Mapping[str, ndarray]
            A state written by the same kind of strategy.

        Raises
        ------
        InvalidInput
            When the step counter is missing or a moment lacks its pair.
        """
        step = _scalar(state, "step")
        m = {n: np.array(a, dtype=np.float64) for n, a in _prefixed(state, "m.").items()}
        v = {n: np.array(a, dtype=np.float64) for n, a in _prefixed(state, "v.").items()}
        if set(m) != set(v) or any(m[n].shape != v[n].shape for n in m):
            raise InvalidInput(
                f"{self.name} state has unpaired moments: m for {sorted(m)[:3]}, "
                f"v for {sorted(v)[:3]}.",
                field="state",
                hint="Load a state_dict written by the same strategy.",
            )
        self._m, self._v, self._step, self._ready = m, v, step, True


class _DecayingFedOpt(_FedOpt):
    """A server optimizer whose second moment has a rate ``beta_2`` (Adam, Yogi)."""

    def __init__(self, eta: float, *, beta_1: float, beta_2: float, tau: float) -> None:
        _check_number(beta_2, field="beta_2", low=0.0, high=1.0)
        super().__init__(eta, beta_1=beta_1, tau=tau)
        self.beta_2 = beta_2

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``eta``, ``beta_1``, ``beta_2`` and ``tau``."""
        return {**super().get_params(), "beta_2": self.beta_2}


class FedAdam(_DecayingFedOpt):
    """FedAdam: Adam on the server, ``v = beta_2 * v + (1 - beta_2) * delta ** 2``.

    Parameters
    ----------
    eta : float, default 1e-2
        Server learning rate, ``> 0``.
    beta_1 : float, default 0.9
        First-moment decay, in ``[0, 1)``.
    beta_2 : float, default 0.99
        Second-moment decay, in ``[0, 1)``.
    tau : float, default 1e-3
        Adaptivity (added to ``sqrt(v)``; ``v`` starts at ``tau ** 2``), ``> 0``.

    Raises
    ------
    InvalidInput
        When a hyperparameter is out of range (field ``strategy.<name>``).
    """

    name: ClassVar[str] = "fedadam"

    def __init__(
        self, eta: float = 1e-2, *, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def _second_moment(
        self, v: npt.NDArray[np.float64], delta: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        return self.beta_2 * v + (1.0 - self.beta_2) * np.square(delta)


class FedYogi(_DecayingFedOpt):
    """FedYogi: ``v = v - (1 - beta_2) * delta ** 2 * sign(v - delta ** 2)``.

    Parameters
    ----------
    eta : float, default 1e-2
        Server learning rate, ``> 0``.
    beta_1 : float, default 0.9
        First-moment decay, in ``[0, 1)``.
    beta_2 : float, default 0.99
        Second-moment rate, in ``[0, 1)``.
    tau : float, default 1e-3
        Adaptivity (added to ``sqrt(v)``; ``v`` starts at ``tau ** 2``), ``> 0``.

    Raises
    ------
    InvalidInput
        When a hyperparameter is out of range (field ``strategy.<name>``).
    """

    name: ClassVar[str] = "fedyogi"

    def __init__(
        self, eta: float = 1e-2, *, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3
    ) -> None:
        super().__init__(eta, beta_1=beta_1, beta_2=beta_2, tau=tau)

    def _second_moment(
        self, v: npt.NDArray[np.float64], delta: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        squared = np.square(delta)
        return v - (1.0 - self.beta_2) * squared * np.sign(v - squared)


class FedAdagrad(_FedOpt):
    """FedAdagrad: ``v = v + delta ** 2`` (no second-moment decay, so no ``beta_2``).

    Parameters
    ----------
    eta : float, default 1e-2
        Server learning rate, ``> 0``.
    beta_1 : float, default 0.0
        First-moment decay, in ``[0, 1)``; 0 (no momentum) as in the paper's FedAdagrad.
    tau : float, default 1e-3
        Adaptivity (added to ``sqrt(v)``; ``v`` starts at ``tau ** 2``), ``> 0``.

    Raises
    ------
    InvalidInput
        When a hyperparameter is out of range (field ``strategy.<name>``).
    """

    name: ClassVar[str] = "fedadagrad"

    def __init__(self, eta: float = 1e-2, *, beta_1: float = 0.0, tau: float = 1e-3) -> None:
        super().__init__(eta, beta_1=beta_1, tau=tau)

    def _second_moment(
        self, v: npt.NDArray[np.float64], delta: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        return v + np.square(delta)
