"""The [federated] and [strategy] sections of fedloop.toml: rounds, sampling, secure aggregation, the rule."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from fedloop.core.config_section import Section

__all__ = ["FederatedConfig", "SecureAggregationConfig", "StrategyConfig"]


class SecureAggregationConfig(Section):
    """Secure aggregation of client updates (Bonawitz et al. 2017; SecAgg+ with ``neighbours``).

    The coordinator learns only the sum of the surviving clients' updates: each client masks
    its update with pairwise masks agreed over X25519 and a self mask, and the masks of
    clients that drop out mid-round are removed with Shamir-shared secrets.

    Parameters
    ----------
    enabled : bool, default False
        Aggregate with secure aggregation (four exchanges per round instead of one).
    threshold : float, default 0.5
        Fraction of the round's clients (of each neighbourhood with ``neighbours``) whose
        shares reconstruct a secret: ``floor(threshold * n) + 1``, at least 2. Up to
        ``n - that`` clients may drop out after sharing keys; fewer survivors skip the round.
    neighbours : int or None, default None
        SecAgg+: each client masks with only this many neighbours (even, >= 2) on a random
        ring graph, so a round costs O(n log n) instead of O(n^2). None masks every pair.
    scale_bits : int, default 20
        Fixed-point precision: values are rounded to multiples of ``2**-scale_bits``.
    clip : float, default 2097152.0
        Largest magnitude of one client's encoded value (its example count times its update
        for example-weighted rules); a client whose update exceeds it drops out of the round
        with that reason instead of being silently clipped.
    stage_timeout_s : float, default 60
        Deadline of each key-exchange stage (training uses ``round_timeout_s``).
    """

    enabled: bool = False
    threshold: float = Field(default=0.5, ge=0.0, lt=1.0)
    neighbours: int | None = Field(default=None, ge=2, le=10_000)
    scale_bits: int = Field(default=20, ge=4, le=40)
    clip: float = Field(default=float(2**21), gt=0)
    stage_timeout_s: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("neighbours")
    @classmethod
    def _even_neighbours(cls, value: int | None) -> int | None:
        if value is not None and value % 2:
            raise ValueError("must be an even number (neighbours on both sides of the ring)")
        return value


class FederatedConfig(Section):
    """How the coordinator runs rounds.

    Parameters
    ----------
    num_rounds : int, default 10
        Rounds to run.
    clients_per_round : int or None, default None
        Updates aggregated per round; None means ``fraction_train`` of the available clients.
        With an asynchronous strategy (FedBuff): how many clients train at once.
    fraction_train : float, default 1.0
        Fraction of available clients aggregated per round when ``clients_per_round`` is None.
    min_clients : int, default 1
        A round with fewer accepted updates is skipped (the model does not change).
    over_selection : float, default 0.0
        Extra fraction of clients selected so that stragglers and failures do not stall a round;
        the first ``clients_per_round`` accepted updates (by client id) are aggregated.
    round_timeout_s : float, default 600
        Deadline of a round; clients that have not answered by then are dropped from it.
    local_epochs : int, default 1
        Epochs each client trains per round.
    max_update_norm : float or None, default None
        Updates whose change (L2 norm of client minus global weights) exceeds this are rejected.
    max_skipped_rounds : int, default 3
        Consecutive skipped rounds after which the run fails.
    seed : int, default 0
        Seeds client sampling and client training (the run is reproducible bit for bit).
    secure_aggregation : SecureAggregationConfig
        ``[federated.secure_aggregation]``: the coordinator sees only the sum of the updates.
    """

    num_rounds: int = Field(default=10, ge=1, le=100_000)
    clients_per_round: int | None = Field(default=None, ge=1)
    fraction_train: float = Field(default=1.0, gt=0, le=1)
    min_clients: int = Field(default=1, ge=1)
    over_selection: float = Field(default=0.0, ge=0, le=10)
    round_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    local_epochs: int = Field(default=1, ge=1, le=1_000)
    max_update_norm: float | None = Field(default=None, gt=0)
    max_skipped_rounds: int = Field(default=3, ge=0)
    seed: int = Field(default=0, ge=0)
    secure_aggregation: SecureAggregationConfig = Field(default_factory=SecureAggregationConfig)

    @model_validator(mode="after")
    def _norm_check_needs_updates(self) -> FederatedConfig:
        if self.secure_aggregation.enabled and self.max_update_norm is not None:
            raise ValueError(
                "max_update_norm cannot be checked with secure aggregation: the coordinator "
                "never sees an individual update. Unset it, and bound updates with the "
                "dpfedavg strategy's clip_norm (clients clip before masking)."
            )
        return self


class StrategyConfig(Section):
    """Which aggregation rule to use and its hyperparameters.

    Parameters
    ----------
    name : str, default "fedavg"
        fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed_mean, krum, multikrum, fedbuff.
    params : dict, default {}
        Constructor arguments of the strategy (e.g. ``proximal_mu = 0.01``).
    """

    name: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)
