"""DP-FedAvg: client-level differential privacy by clipping and Gaussian noise (McMahan et al., 2018)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fedloop.core import AggregationError, InvalidInput, Parameters, PrivacyBudgetExhausted
from fedloop.federated.privacy import (
    CLIP_NORM_KEY,
    LEDGER_KEY,
    PrivacyAccountant,
    clip_update,
    noisy_unclipped_fraction,
    split_noise_multiplier,
    update_clip_norm,
)
from fedloop.federated.strategies._util import (
    _cast_like,
    _check_number,
    _check_updates,
    _invalid,
    _is_float,
    _mean_from_sum,
    _weighted_mean,
)
from fedloop.federated.strategies.base import ClientUpdate, SecureSum, Strategy

__all__ = ["DPFedAvg"]

_Sums = OrderedDict[str, npt.NDArray[np.float64]]


class DPFedAvg(Strategy):
    """FedAvg with client-level differential privacy: clip, average, add Gaussian noise.

    Each round, every client's update (its model minus the global one, floating tensors only)
    is clipped to global L2 norm ``C``; the clipped updates are summed and divided by the
    expected number of clients ``n`` (uniform weights: one client's influence is at most
    ``C / n``), and Gaussian noise of standard deviation ``z * C / n`` is added to every
    coordinate. An RDP accountant (dp-accounting) charges one Poisson-subsampled Gaussian
    mechanism ``(q, z)`` per round. Before a round that would take epsilon at ``target_delta``
    above ``target_epsilon``, :meth:`configure_train` (before clients train) and
    :meth:`aggregate_train` raise :class:`PrivacyBudgetExhausted`.

    With ``adaptive_clipping`` the clip norm tracks the ``target_quantile`` of the update norms
    (Andrew et al., 2021): the count of unclipped clients gets noise ``clipped_count_stddev``,
    and the model noise is lowered so that both together cost exactly multiplier ``z``.

    The ledger and the clip norm are in :meth:`state_dict`, which the coordinator checkpoints
    each round, so a resumed run keeps spending from where the killed one stopped.

    Parameters
    ----------
    noise_multiplier : float, default 1.0
        ``z >= 0``, noise standard deviation over the clip norm (0: no privacy, epsilon inf).
    clip_norm : float, default 1.0
        ``C > 0``, the L2 bound on each client's update (the initial one when adaptive).
    expected_clients_per_round : int or None, default None
        ``n``, the fixed denominator of the average (set it to ``clients_per_round``); None
        divides by the number of updates received.
    sampling_probability : float, default 1.0
        ``q`` in (0, 1], the chance a client is picked in a round (``clients_per_round /
        number of clients``); 1.0 claims no amplification by sampling.
    adaptive_clipping : bool, default False
        Let the clip norm follow ``target_quantile`` of the update norms.
    target_quantile : float, default 0.5
        ``gamma`` in [0, 1] (adaptive clipping only).
    clip_learning_rate : float, default 0.2
        ``eta > 0`` of the geometric update ``C *= exp(-eta * (b - gamma))``.
    clipped_count_stddev : float or None, default None
        ``sigma_b``, noise on the unclipped count; None means ``n / 20`` (the paper's choice).
    target_epsilon : float or None, default None
        The budget; None only tracks epsilon.
    target_delta : float, default 1e-5
        The delta at which epsilon is computed, in (0, 1).
    seed : int or None, default None
        Seed of the noise (``default_rng([seed, round])``): reproducible runs, but whoever
        knows the seed can remove the noise. None draws fresh OS entropy.

    Raises
    ------
    InvalidInput
        For a parameter out of range (field ``strategy.<param>``).

    Notes
    -----
    Integer and boolean tensors (counters such as BatchNorm's ``num_batches_tracked``) are not
    privatized: they are averaged uniformly and rounded as FedAvg does. The coordinator picks a
    fixed number of clients per round; charging it as Poisson sampling with
    ``q = n / clients`` is the usual approximation (McMahan et al., 2018).

    Examples
    --------
    >>> from fedloop.federated.strategies import make_strategy
    >>> s = make_strategy("dpfedavg", noise_multiplier=1.1, clip_norm=0.5, target_epsilon=8.0)
    >>> s.get_params()["target_epsilon"]
    8.0
    """

    name: ClassVar[str] = "dpfedavg"
    secure_weighting: ClassVar[str | None] = "uniform"

    def __init__(
        self,
        noise_multiplier: float = 1.0,
        clip_norm: float = 1.0,
        *,
        expected_clients_per_round: int | None = None,
        sampling_probability: float = 1.0,
        adaptive_clipping: bool = False,
        target_quantile: float = 0.5,
        clip_learning_rate: float = 0.2,
        clipped_count_stddev: float | None = None,
        target_epsilon: float | None = None,
        target_delta: float = 1e-5,
        seed: int | None = None,
    ) -> None:
        _check_number(noise_multiplier, field="noise_multiplier", low=0.0)
        _check_number(clip_norm, field="clip_norm", low=0.0, low_open=True)
        if expected_clients_per_round is not None and (
            isinstance(expected_clients_per_round, bool)
            or not isinstance(expected_clients_per_round, int)
            or expected_clients_per_round < 1
        ):
            raise _invalid(
                "expected_clients_per_round", "None or an integer >= 1", expected_clients_per_round
            )
        _check_number(
            sampling_probability,
            field="sampling_probability",
            low=0.0,
            low_open=True,
            high=1.0,
            high_open=False,
        )
        if not isinstance(adaptive_clipping, bool):
            raise _invalid("adaptive_clipping", "true or false", adaptive_clipping)
        _check_number(target_quantile, field="target_quantile", low=0.0, high=1.0, high_open=False)
        _check_number(clip_learning_rate, field="clip_learning_rate", low=0.0, low_open=True)
        if clipped_count_stddev is not None:
            _check_number(clipped_count_stddev, field="clipped_count_stddev", low=0.0)
        if target_epsilon is not None:
            _check_number(target_epsilon, field="target_epsilon", low=0.0, low_open=True)
        _check_number(target_delta, field="target_delta", low=0.0, low_open=True, high=1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise _invalid("seed", "None or an integer >= 0", seed)
        if adaptive_clipping and noise_multiplier > 0 and expected_clients_per_round is None:
            raise _invalid(
                "expected_clients_per_round",
                "an integer >= 1 with adaptive clipping and noise (it scales the count noise)",
                expected_clients_per_round,
            )
        self.noise_multiplier = noise_multiplier
        self.clip_norm = clip_norm
        self.expected_clients_per_round = expected_clients_per_round
        self.sampling_probability = sampling_probability
        self.adaptive_clipping = adaptive_clipping
        self.target_quantile = target_quantile
        self.clip_learning_rate = clip_learning_rate
        self.clipped_count_stddev = clipped_count_stddev
        self.target_epsilon = target_epsilon
        self.target_delta = target_delta
        self.seed = seed
        self._model_noise_multiplier = (
            split_noise_multiplier(float(noise_multiplier), self._count_stddev())
            if adaptive_clipping
            else float(noise_multiplier)
        )
        self.accountant = PrivacyAccountant()
        self.current_clip_norm = float(clip_norm)

    def _count_stddev(self) -> float:
        if not self.adaptive_clipping:
            return 0.0
        if self.clipped_count_stddev is not None:
            return float(self.clipped_count_stddev)
        return (self.expected_clients_per_round or 0) / 20.0

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments as given."""
        return {
            "noise_multiplier": self.noise_multiplier,
            "clip_norm": self.clip_norm,
            "expected_clients_per_round": self.expected_clients_per_round,
            "sampling_probability": self.sampling_probability,
            "adaptive_clipping": self.adaptive_clipping,
            "target_quantile": self.target_quantile,
            "clip_learning_rate": self.clip_learning_rate,
            "clipped_count_stddev": self.clipped_count_stddev,
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "seed": self.seed,
        }

    def initialize(self, parameters: Parameters) -> None:
        """Start a new run: an empty ledger and the initial clip norm."""
        self.accountant = PrivacyAccountant()
        self.current_clip_norm = float(self.clip_norm)

    # -- privacy budget --------------------------------------------------------------------
    def epsilon(self) -> float:
        """Return the epsilon spent so far at ``target_delta``."""
        return self.accountant.epsilon(float(self.target_delta))

    def _check_budget(self, round_num: int) -> None:
        """Raise PrivacyBudgetExhausted if one more round would overspend the budget."""
        if self.target_epsilon is None:
            return
        step = (float(self.sampling_probability), float(self.noise_multiplier))
        delta = float(self.target_delta)
        after = self.accountant.epsilon(delta, next_round=step)
        if after <= self.target_epsilon:
            return
        spent = self.epsilon()
        raise PrivacyBudgetExhausted(
            f"the privacy budget is spent: round {round_num} would raise epsilon from "
            f"{spent:.4g} to {after:.4g} at delta {delta:g}, above `strategy.target_epsilon` = "
            f"{self.target_epsilon:g} after {self.accountant.rounds} DP rounds; training stops "
            "with the model of the last completed round.",
            field="strategy.target_epsilon",
            value=self.target_epsilon,
            hint="Register the last round's model, or start a new run with a larger "
            "target_epsilon, a larger noise_multiplier or a smaller sampling_probability.",
        )

    def configure_train(self, round_num: int) -> dict[str, Any]:
        """Refuse a round the budget cannot pay for, before any client trains.

        Returns
        -------
        dict
            ``{}``: clients train as usual.

        Raises
        ------
        PrivacyBudgetExhausted
            When the round would take epsilon above ``target_epsilon`` (field
            ``strategy.target_epsilon``).
        """
        self._check_budget(round_num)
        return {}

    # -- aggregation -----------------------------------------------------------------------
    def aggregate_train(
        self, round_num: int, current: Parameters, updates: Sequence[ClientUpdate]
    ) -> Parameters:
        """Return the global model plus the noised mean of the clipped client updates.

        Parameters
        ----------
        round_num : int
            The round being aggregated (seeds the noise).
        current : OrderedDict[str, ndarray]
            The global model the clients started from.
        updates : sequence of ClientUpdate
            The clients' full models.

        Returns
        -------
        OrderedDict[str, ndarray]
            The next global model, in the tensor order and dtypes of ``current``.

        Raises
        ------
        AggregationError
            When there are no updates or one does not match ``current``.
        PrivacyBudgetExhausted
            When this round would take epsilon above ``target_epsilon``.
        """
        ordered = _check_updates(current, updates)
        self._check_budget(round_num)
        floats = [name for name, array in current.items() if _is_float(array)]
        clip = self.current_clip_norm
        total: _Sums = OrderedDict(
            (name, np.zeros(current[name].shape, dtype=np.float64)) for name in floats
        )
        unclipped = 0
        for update in ordered:
            delta = OrderedDict(
                (n, update.parameters[n].astype(np.float64) - current[n].astype(np.float64))
                for n in floats
            )
            clipped, norm = clip_update(delta, clip)
            unclipped += norm <= clip
            for name in floats:
                total[name] += clipped[name]
        others = [name for name in current if name not in total]
        rounded = (
            _weighted_mean(
                [OrderedDict((n, u.parameters[n]) for n in others) for u in ordered],
                [1.0] * len(ordered),
            )
            if others
            else OrderedDict()
        )
        return self._noised_step(
            round_num, current, total, rounded, unclipped=unclipped, received=len(ordered)
        )

    def secure_client_settings(self, round_num: int) -> dict[str, Any]:
        """Ask clients to clip their floating-point update to the current clip norm."""
        return {"clip_norm": float(self.current_clip_norm)}

    def aggregate_secure(self, round_num: int, current: Parameters, total: SecureSum) -> Parameters:
        """Noise the secure sum of the clients' clipped updates, as :meth:`aggregate_train` does.

        Clients clipped their own updates (:meth:`secure_client_settings`) and weighted them
        uniformly, so the sum is exactly the one :meth:`aggregate_train` would form; the count
        of unclipped clients for adaptive clipping comes summed the same way.

        Raises
        ------
        AggregationError
            When the sum does not match ``current`` or holds no client.
        PrivacyBudgetExhausted
            When this round would take epsilon above ``target_epsilon``.
        """
        if total.count < 1:
            raise AggregationError("no updates to aggregate.", field="updates")
        self._check_budget(round_num)
        mean = _mean_from_sum(current, total)
        floats: _Sums = OrderedDict(
            (name, total.delta_sum[name].astype(np.float64))
            for name, a in current.items()
            if _is_float(a)
        )
        rounded: Parameters = OrderedDict(
            (name, _cast_like(mean[name], a.dtype))
            for name, a in current.items()
            if not _is_float(a)
        )
        return self._noised_step(
            round_num, current, floats, rounded, unclipped=total.unclipped, received=total.count
        )

    def _noised_step(
        self,
        round_num: int,
        current: Parameters,
        total: _Sums,
        rounded: Parameters,
        *,
        unclipped: float,
        received: int,
    ) -> Parameters:
        """Add noise to the sum of clipped float updates, step, adapt the clip and charge."""
        clip = self.current_clip_norm
        denominator = float(self.expected_clients_per_round or received)
        rng = (
            np.random.default_rng([self.seed, round_num])
            if self.seed is not None
            else np.random.default_rng()
        )
        stddev = self._model_noise_multiplier * clip / denominator
        out: Parameters = OrderedDict()
        for name, array in current.items():
            if name not in total:
                out[name] = rounded[name]
                continue
            step = total[name] / denominator
            if stddev > 0:
                step = step + rng.normal(0.0, stddev, size=step.shape)
            out[name] = _cast_like(array.astype(np.float64) + step, array.dtype)
        if self.adaptive_clipping:
            fraction = noisy_unclipped_fraction(
                unclipped,
                count_stddev=self._count_stddev() if self.noise_multiplier > 0 else 0.0,
                num_expected=denominator,
                rng=rng,
            )
            self.current_clip_norm = update_clip_norm(
                clip,
                fraction,
                target_quantile=float(self.target_quantile),
                learning_rate=float(self.clip_learning_rate),
            )
        self.accountant.spend(
            sampling_probability=float(self.sampling_probability),
            noise_multiplier=float(self.noise_multiplier),
        )
        return out

    # -- checkpoint ------------------------------------------------------------------------
    def round_metrics(self) -> dict[str, float]:
        """Return the privacy spent so far: ``dp_epsilon`` (at ``target_delta``) and the clip norm."""
        metrics = {"dp_clip_norm": float(self.current_clip_norm)}
        if self.accountant.rounds:
            epsilon = self.epsilon()
            if math.isfinite(epsilon):
                metrics["dp_epsilon"] = float(epsilon)
        return metrics

    def state_dict(self) -> dict[str, npt.NDArray[np.generic]]:
        """Return the privacy ledger (``(rounds, 2)`` of ``(q, z)``) and the clip norm."""
        return {
            LEDGER_KEY: self.accountant.state(),
            CLIP_NORM_KEY: np.array([self.current_clip_norm], dtype=np.float64),
        }

    def load_state_dict(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Restore the ledger and the clip norm written by :meth:`state_dict`.

        Raises
        ------
        InvalidInput
            When either entry is missing or malformed.
        """
        ledger, clip = state.get(LEDGER_KEY), state.get(CLIP_NORM_KEY)
        if ledger is None or clip is None or clip.size != 1:
            raise InvalidInput(
                f"strategy state lacks {LEDGER_KEY!r} or {CLIP_NORM_KEY!r}.",
                field="state",
                hint="Load a state_dict written by DPFedAvg.",
            )
        value = float(clip.reshape(-1)[0])
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"strategy state has clip norm {value!r}; expected a finite number > 0.",
                field=f"state[{CLIP_NORM_KEY!r}]",
            )
        self.accountant = PrivacyAccountant.from_state(ledger)
        self.current_clip_norm = value
