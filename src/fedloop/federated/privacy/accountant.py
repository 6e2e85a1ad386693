"""``PrivacyAccountant``: the (epsilon, delta) ledger of DP-FedAvg rounds, on dp-accounting's RDP."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput

__all__ = ["CLIP_NORM_KEY", "LEDGER_KEY", "RDP_ORDERS", "PrivacyAccountant", "privacy_record"]

#: Keys of DPFedAvg's checkpointed state: the ledger of ``(q, z)`` rows and the clip norm.
LEDGER_KEY = "dp.ledger"
CLIP_NORM_KEY = "dp.clip_norm"

#: Integer Renyi orders (fractional orders below 2 fail to converge for small q in dp-accounting
#: and only log warnings; integer orders use the exact binomial expansion).
RDP_ORDERS: tuple[float, ...] = (*range(2, 65), 80.0, 96.0, 128.0, 256.0, 512.0, 1024.0)


class PrivacyAccountant:
    """The ledger of Gaussian rounds run so far and the epsilon they cost.

    Each round is one Poisson-subsampled Gaussian mechanism
    (``PoissonSampledDpEvent(q, GaussianDpEvent(z))``), composed in dp-accounting's
    ``RdpAccountant``. The ledger is only the list of ``(q, z)`` per round, so
    :meth:`state` / :meth:`from_state` rebuild the same epsilon after a restart, bit for bit.

    Example
    -------
    >>> accountant = PrivacyAccountant()
    >>> accountant.spend(sampling_probability=0.1, noise_multiplier=1.0, rounds=5)
    >>> round(accountant.epsilon(1e-5), 3)  # doctest: +SKIP
    2.902
    """

    def __init__(self) -> None:
        self._ledger: list[tuple[float, float]] = []

    @property
    def rounds(self) -> int:
        """How many rounds were charged."""
        return len(self._ledger)

    def spend(
        self, *, sampling_probability: float, noise_multiplier: float, rounds: int = 1
    ) -> None:
        """Charge ``rounds`` rounds of a subsampled Gaussian mechanism.

        Parameters
        ----------
        sampling_probability : float
            ``q`` in (0, 1]: the chance that a client takes part in a round.
        noise_multiplier : float
            ``z >= 0``: noise standard deviation over the clip norm (0 means no privacy).
        rounds : int, default 1
            Rounds to charge.
        """
        self._ledger.extend([(float(sampling_probability), float(noise_multiplier))] * rounds)

    def _runs(self, extra: tuple[float, float] | None = None) -> Iterator[tuple[float, float, int]]:
        """Yield ``(q, z, count)`` for each run of equal consecutive rounds."""
        ledger = [*self._ledger, *([extra] if extra is not None else [])]
        start = 0
        for i in range(1, len(ledger) + 1):
            if i == len(ledger) or ledger[i] != ledger[start]:
                yield (*ledger[start], i - start)
                start = i

    def epsilon(self, delta: float, *, next_round: tuple[float, float] | None = None) -> float:
        """Return the epsilon spent at ``delta`` (``inf`` when some round had no noise).

        Parameters
        ----------
        delta : float
            The target delta in (0, 1).
        next_round : (float, float) or None
            Also charge one more round ``(q, z)``: what the ledger would say after it.

        Returns
        -------
        float
            Epsilon (0 for an empty ledger).

        Raises
        ------
        InvalidInput
            When ``delta`` is not in (0, 1) (field ``strategy.target_delta``).
        """
        if not 0 < delta < 1:
            raise InvalidInput(
                f"`strategy.target_delta` must be a number in (0, 1); got {delta!r}.",
                field="strategy.target_delta",
                value=delta,
            )
        runs = list(self._runs(next_round))
        if not runs:
            return 0.0
        if any(z == 0 for _, z, _ in runs):
            return float("inf")
        dp = _dp_accounting()
        accountant = dp.rdp.RdpAccountant(orders=list(RDP_ORDERS))
        for q, z, count in runs:
            event = dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(z))
            accountant.compose(event, count)
        return float(accountant.get_epsilon(delta))

    def state(self) -> npt.NDArray[np.float64]:
        """Return the ledger as a ``(rounds, 2)`` float64 array of ``(q, z)`` rows."""
        return np.array(self._ledger, dtype=np.float64).reshape(-1, 2)

    @classmethod
    def from_state(cls, state: npt.NDArray[Any]) -> PrivacyAccountant:
        """Rebuild an accountant from :meth:`state`.

        Raises
        ------
        InvalidInput
            When the array is not ``(rounds, 2)`` of finite values.
        """
        array = np.asarray(state)
        if array.ndim != 2 or array.shape[1] != 2 or not np.all(np.isfinite(array)):
            raise InvalidInput(
                f"a privacy ledger must be a (rounds, 2) array of finite (q, z); got shape "
                f"{array.shape}.",
                field="state['dp.ledger']",
                hint="Load a state_dict written by DPFedAvg.",
            )
        accountant = cls()
        accountant._ledger = [(float(q), float(z)) for q, z in array.astype(np.float64)]
        return accountant


def privacy_record(
    params: Mapping[str, Any], state: Mapping[str, npt.NDArray[Any]]
) -> dict[str, Any] | None:
    """Return the privacy cost of a DP-FedAvg run for its model version, or None without DP.

    Parameters
    ----------
    params : Mapping
        The strategy's constructor arguments (``get_params()``, or the run record's
        ``strategy.*`` params, which are stored as text).
    state : Mapping[str, ndarray]
        The strategy state checkpointed with the last round (holds the ledger).

    Returns
    -------
    dict or None
        ``mechanism``, ``epsilon``, ``delta``, ``noise_multiplier``, ``clip_norm`` (the last
        one used; the initial one is ``initial_clip_norm``), ``rounds``, ``accountant``,
        ``sampling_probability``, ``target_epsilon`` and ``adaptive_clipping``; None when the
        state holds no ledger.
    """
    ledger = state.get(LEDGER_KEY)
    if ledger is None:
        return None
    accountant = PrivacyAccountant.from_state(ledger)
    delta = _maybe_float(params.get("target_delta")) or 1e-5
    epsilon = accountant.epsilon(delta)
    clip = state.get(CLIP_NORM_KEY)
    initial = _maybe_float(params.get("clip_norm"))
    # The ledger is authoritative for what was charged; the last round's (q, z) is reported.
    last = accountant.state()[-1] if accountant.rounds else None
    return {
        "mechanism": "dp-fedavg",
        "accountant": "rdp",
        # JSON has no infinity: a run without noise is recorded with epsilon null.
        "epsilon": epsilon if np.isfinite(epsilon) else None,
        "delta": delta,
        "noise_multiplier": float(last[1])
        if last is not None
        else _maybe_float(params.get("noise_multiplier")),
        "sampling_probability": float(last[0])
        if last is not None
        else _maybe_float(params.get("sampling_probability")),
        "clip_norm": float(clip.reshape(-1)[0]) if clip is not None else initial,
        "initial_clip_norm": initial,
        "adaptive_clipping": str(params.get("adaptive_clipping", False)).lower() == "true",
        "target_epsilon": _maybe_float(params.get("target_epsilon")),
        "rounds": accountant.rounds,
    }


def _maybe_float(value: Any) -> float | None:
    """Read a number that may have been stored as text (run params are strings); None if absent."""
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return None
    return float(value)


def _dp_accounting() -> Any:
    """Import dp-accounting on first use (about 1 s, so ``import fedloop`` stays light)."""
    import dp_accounting  # type: ignore[import-untyped]
    import dp_accounting.rdp  # type: ignore[import-untyped]

    return dp_accounting
