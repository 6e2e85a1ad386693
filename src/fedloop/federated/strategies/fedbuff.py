"""FedBuff: asynchronous buffered aggregation with staleness weighting (Nguyen et al., 2022)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, FedloopWarning, InvalidInput, Parameters
from fedloop.federated.strategies._util import (
    _cast_like,
    _check_base_rounds,
    _check_choice,
    _check_int,
    _check_number,
    _check_updates,
    _copy,
    _counter,
    _prefixed,
    _scalar,
)
from fedloop.federated.strategies.base import ClientUpdate, Strategy

__all__ = ["FedBuff"]

_STALENESS = ("polynomial", "constant", "hinge")


class FedBuff(Strategy):
    """Buffered asynchronous aggregation: apply the mean of K staleness-weighted client deltas.

    **Caller contract.** ``round_num`` grows from call to call (the coordinator's round).
    ``current`` is the model the previous call returned. An update's ``base_round`` is the
    ``round_num`` of the call whose result the client trained from: ``round_num - 1`` for the
    newest model, ``0`` for the one given to :meth:`initialize`. Clients send full models;
    the last ``max_staleness + 1`` global models are kept to turn them into deltas
    ``update - model it started from``.

    **Staleness** ``s`` counts the server steps (buffer flushes) since that model, so a
    fresh update has ``s = 0`` however many calls passed without a flush. Its weight is
    ``(1 + s) ** -staleness_exponent`` ("polynomial"; the paper's ``1 / sqrt(1 + s)`` by
    default), ``1`` ("constant"), or FedAsync's "hinge": ``1`` up to ``staleness_cutoff``,
    then ``1 / (staleness_slope * (s - staleness_cutoff) + 1)``. Updates with
    ``s > max_staleness`` are dropped with a :class:`~fedloop.core.FedloopWarning`.

    **Buffer.** While it holds fewer than ``buffer_size`` updates a call returns a copy of
    ``current``. Once it holds ``k >= buffer_size`` (one call's updates count together, so
    their order does not matter) the model becomes ``current + server_lr *
    sum_i(weight_i * delta_i) / k`` (the paper divides by K, not by the sum of weights;
    example counts are unused) and the buffer empties. Buffer, history and counters are in
    :meth:`state_dict`, so a restart continues exactly; deltas buffered at the end of a run
    are never applied.

    Parameters
    ----------
    buffer_size : int
        K, updates per server step, ``>= 1``.
    server_lr : float, default 1.0
        Server learning rate, ``> 0``.
    staleness : {"polynomial", "constant", "hinge"}, default "polynomial"
        Staleness weighting function.
    staleness_exponent : float, default 0.5
        Exponent ``a`` of "polynomial", ``>= 0``.
    staleness_slope : float, default 10.0
        Slope ``a`` of "hinge", ``>= 0``.
    staleness_cutoff : int, default 4
        Staleness ``b`` up to which "hinge" weighs 1, ``>= 0``.
    max_staleness : int, default 10
        Older updates are dropped; also bounds the history kept, ``>= 0``.

    Raises
    ------
    InvalidInput
        When a parameter is out of range (field ``strategy.<name>``).
    """

    name: ClassVar[str] = "fedbuff"
    asynchronous: ClassVar[bool] = True

    def __init__(
        self,
        buffer_size: int,
        *,
        server_lr: float = 1.0,
        staleness: str = "polynomial",
        staleness_exponent: float = 0.5,
        staleness_slope: float = 10.0,
        staleness_cutoff: int = 4,
        max_staleness: int = 10,
    ) -> None:
        _check_int(buffer_size, field="buffer_size", low=1)
        _check_number(server_lr, field="server_lr", low=0.0, low_open=True)
        _check_choice(staleness, field="staleness", choices=_STALENESS)
        _check_number(staleness_exponent, field="staleness_exponent", low=0.0)
        _check_number(staleness_slope, field="staleness_slope", low=0.0)
        _check_int(staleness_cutoff, field="staleness_cutoff", low=0)
        _check_int(max_staleness, field="max_staleness", low=0)
        self.buffer_size = buffer_size
        self.server_lr = server_lr
        self.staleness = staleness
        self.staleness_exponent = staleness_exponent
        self.staleness_slope = staleness_slope
        self.staleness_cutoff = staleness_cutoff
        self.max_staleness = max_staleness
        self._version = 0
        self._last_round = 0
        self._count = 0
        self._buffer: dict[str, npt.NDArray[np.float64]] = {}
        self._history: dict[int, Parameters] = {}
        self._starts: dict[int, int] = {}

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments as given."""
        return {
            "buffer_size": self.buffer_size,
            "server_lr": self.server_lr,
            "staleness": self.staleness,
            "staleness_exponent": self.staleness_exponent,
            "staleness_slope": self.staleness_slope,
            "staleness_cutoff": self.staleness_cutoff,
            "max_staleness": self.max_staleness,
        }

    @property
    def server_steps(self) -> int:
        """Return the server steps (buffer flushes) taken so far: the model's version."""
        return self._version

    def staleness_weight(self, staleness: int) -> float:
        """Return the weight of an update that is ``staleness`` server steps old.

        Parameters
        ----------
        staleness : int
            Server steps since the model the client started from, ``>= 0``.

        Returns
        -------
        float
            In ``(0, 1]``; 1 for a fresh update.
        """
        if self.staleness == "constant":
            return 1.0
        if self.staleness == "hinge":
            excess = staleness - int(self.staleness_cutoff)
            return 1.0 if excess <= 0 else 1.0 / (float(self.staleness_slope) * excess + 1.0)
        return float((1.0 + staleness) ** -float(self.staleness_exponent))

    def initialize(self, parameters: Parameters) -> None:
        """Start at version 0 with ``parameters`` (round 0) and an empty buffer.

        Parameters
        ----------
        parameters : OrderedDict[str, ndarray]
            The initial global model.
        """
        self._version, self._last_round, self._count = 0, 0, 0
        self._buffer = {n: np.zeros(a.shape, dtype=np.float64) for n, a in parameters.items()}
        self._history = {0: _copy(parameters)}
        self._starts = {0: 0}

    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Buffer the updates' weighted deltas and take a server step once the buffer is full.

        Parameters
        ----------
        round_num : int
            This call's number, greater than the previous call's.
        current : OrderedDict[str, ndarray]
            The global model after the previous call.
        updates : sequence of ClientUpdate
            Full client models; ``base_round`` says which global model each started from.

        Returns
        -------
        OrderedDict[str, ndarray]
            The model after a server step, or a copy of ``current`` while the buffer is short.

        Raises
        ------
        AggregationError
            When there are no updates, an update or the state does not match ``current``,
            ``round_num`` does not grow, or a ``base_round`` is not in ``[0, round_num)``.
        """
        ordered = _check_updates(current, updates)
        if not self._history:
            self.initialize(current)
        self._check_call(round_num, current, ordered)
        buffer = {name: acc.copy() for name, acc in self._buffer.items()}
        count = self._count
        for update in ordered:
            version = self._version_of(update.base_round)
            if version is None:
                warnings.warn(
                    f"FedBuff dropped client {update.client_id!r}'s update from round "
                    f"{update.base_round}: older than max_staleness = {self.max_staleness}.",
                    FedloopWarning,
                    stacklevel=2,
                )
                continue
            base = current if version == self._version else self._history[version]
            weight = self.staleness_weight(self._version - version)
            for name, acc in buffer.items():
                acc += weight * np.subtract(update.parameters[name], base[name], dtype=np.float64)
            count += 1
        self._last_round = round_num
        if count < int(self.buffer_size):
            self._buffer, self._count = buffer, count
            return _copy(current)
        lr = float(self.server_lr)
        new: Parameters = OrderedDict(
            (n, _cast_like(x.astype(np.float64) + lr * buffer[n] / count, x.dtype))
            for n, x in current.items()
        )
        self._version += 1
        self._history[self._version] = _copy(new)
        self._starts[self._version] = round_num
        for old in [v for v in self._history if v < self._version - int(self.max_staleness)]:
            del self._history[old], self._starts[old]
        self._buffer = {n: np.zeros_like(acc) for n, acc in buffer.items()}
        self._count = 0
        return new

    def _version_of(self, base_round: int) -> int | None:
        """Return the kept version clients of ``base_round`` started from (None: too old)."""
        held = [v for v, start in self._starts.items() if start <= base_round]
        return max(held) if held else None

    def _check_call(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> None:
        if round_num <= self._last_round:
            raise AggregationError(
                f"FedBuff got round_num {round_num} after round {self._last_round}; "
                "round numbers must increase from call to call.",
                field="round_num",
                value=round_num,
            )
        shapes = {n: a.shape for n, a in current.items()}
        if {n: a.shape for n, a in self._buffer.items()} != shapes:
            raise AggregationError(
                "the FedBuff buffer was built for another model.",
                field="current",
                hint="Call initialize() with the new model, or load the matching state.",
            )
        _check_base_rounds(updates, round_num)

    def state_dict(self) -> dict[str, npt.NDArray[np.generic]]:
        """Return counters, buffer and model history as named arrays (``{}`` before use).

        Returns
        -------
        dict[str, ndarray]
            ``version``, ``last_round``, ``count``, ``history.versions``, ``history.starts``
            (int64), ``buffer.<tensor>`` (float64) and ``history.<version>.<tensor>``.
        """
        if not self._history:
            return {}
        versions = sorted(self._history)
        state: dict[str, npt.NDArray[np.generic]] = {
            "version": _counter(self._version),
            "last_round": _counter(self._last_round),
            "count": _counter(self._count),
            "history.versions": np.array(versions, dtype=np.int64),
            "history.starts": np.array([self._starts[v] for v in versions], dtype=np.int64),
        }
        state.update({f"buffer.{n}": acc.copy() for n, acc in self._buffer.items()})
        for v in versions:
            state.update({f"history.{v}.{n}": a.copy() for n, a in self._history[v].items()})
        return state

    def load_state_dict(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Restore what :meth:`state_dict` returned, bit for bit.

        Parameters
        ----------
        state : Mapping[str, ndarray]
            A state written by FedBuff.

        Raises
        ------
        InvalidInput
            When a counter or a history entry is missing.
        """
        version, last_round, count = (_scalar(state, k) for k in ("version", "last_round", "count"))
        versions = [int(v) for v in state.get("history.versions", ())]
        starts = [int(r) for r in state.get("history.starts", ())]
        if version not in versions or len(starts) != len(versions):
            raise InvalidInput(
                "FedBuff state lacks its model history.",
                field="state",
                hint="Load a state_dict written by FedBuff.",
            )
        buffer = _prefixed(state, "buffer.")
        self._version, self._last_round, self._count = version, last_round, count
        self._buffer = {n: np.array(a, dtype=np.float64) for n, a in buffer.items()}
        self._history = {v: _copy(_prefixed(state, f"history.{v}.")) for v in versions}
        self._starts = dict(zip(versions, starts, strict=True))
