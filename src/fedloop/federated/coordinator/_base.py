"""What the synchronous and the asynchronous loops share: run record, checkpoints, screening."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedloop.core import (
    Conflict,
    DatasetId,
    FederatedConfig,
    NotFound,
    Parameters,
    RunId,
    decode_parameters,
    encode_parameters,
    flatten_config,
    validate_parameters,
)
from fedloop.federated.coordinator.validation import check_update
from fedloop.federated.messages import FitOutcome, FitRes
from fedloop.federated.strategies.base import ClientUpdate, Strategy
from fedloop.federated.transports.base import Transport
from fedloop.store import ArtifactStore, FlClientRound, FlRound, SqlMetadataStore

__all__ = [
    "CoordinatorBase",
    "EvaluateFn",
    "RoundCallback",
    "RoundReport",
    "client_row",
    "round_metrics",
    "screen_outcome",
    "select_clients",
]

EvaluateFn = Callable[[Parameters], Mapping[str, float]]
RoundCallback = Callable[["RoundReport"], None]
_CONFIG_TAG = "fedloop.federated.config_sha256"


def select_clients(available: Sequence[str], round_num: int, *, seed: int, num: int) -> list[str]:
    """Pick ``num`` clients for a round, deterministically from (seed, round).

    Parameters
    ----------
    available : sequence of str
        Client ids that can be reached.
    round_num : int
        Round number.
    seed : int
        Run seed.
    num : int
        How many to pick (capped at ``len(available)``).

    Returns
    -------
    list of str
        Sorted client ids.
    """
    pool = sorted(available)
    rng = np.random.default_rng([seed, round_num])
    count = min(num, len(pool))
    if count == 0:
        return []
    picked = rng.choice(len(pool), size=count, replace=False)
    return sorted(pool[int(i)] for i in picked)


@dataclass(frozen=True)
class RoundReport:
    """What happened in one round (also what the progress bar shows)."""

    round_num: int
    status: str
    metrics: dict[str, float]
    participants: list[str]
    dropped: dict[str, str]
    seconds: float


def _config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def screen_outcome(
    outcome: FitOutcome, *, params: Parameters, round_num: int, max_update_norm: float | None
) -> tuple[str, str | None]:
    """Return ``(status, reason)`` of one outcome: ok, failed, timeout or rejected."""
    if outcome.result is None:
        status = "timeout" if outcome.timed_out else "failed"
        return status, outcome.error or status
    reason = check_update(
        outcome.result, global_params=params, round_num=round_num, max_update_norm=max_update_norm
    )
    return ("ok", None) if reason is None else ("rejected", reason)


def client_row(outcome: FitOutcome, status: str, reason: str | None) -> FlClientRound:
    """Return the ``fl_client_rounds`` row of one outcome (its finite numeric metrics only)."""
    res: FitRes | None = outcome.result
    return FlClientRound(
        client_id=outcome.client_id,
        status=status,
        reason=reason,
        num_examples=res.num_examples if res is not None and status == "ok" else None,
        metrics={
            k: float(v)
            for k, v in (res.metrics if res is not None else {}).items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        },
        bytes_up=outcome.bytes_up,
        bytes_down=outcome.bytes_down,
        seconds=outcome.seconds,
    )


def round_metrics(
    accepted: Sequence[ClientUpdate],
    *,
    dropouts: int,
    bytes_up: int,
    bytes_down: int,
    params: Parameters,
    evaluate_fn: EvaluateFn | None,
    started: float,
    extra: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Return a round's metrics: participants, dropouts, bytes, train loss, evaluation, seconds."""
    metrics: dict[str, float] = {
        "participants": float(len(accepted)),
        "dropouts": float(dropouts),
        "bytes_up": float(bytes_up),
        "bytes_down": float(bytes_down),
    }
    total = sum(u.num_examples for u in accepted)
    if total and all("loss" in u.metrics for u in accepted):
        loss = sum(u.metrics["loss"] * u.num_examples for u in accepted) / total
        if math.isfinite(loss):  # a diverged client's NaN loss is in its row, not the round's
            metrics["train_loss"] = loss
    if evaluate_fn is not None:
        metrics.update(
            {
                f"eval_{k}": float(v)
                for k, v in evaluate_fn(params).items()
                if math.isfinite(float(v))
            }
        )
    metrics.update({k: v for k, v in (extra or {}).items() if math.isfinite(v)})
    metrics["seconds"] = time.perf_counter() - started
    return metrics


class CoordinatorBase:
    """The run record, round checkpoints and resume that every coordinator loop shares.

    Parameters
    ----------
    transport : Transport
        How to reach clients (in-process, process pool, HTTP).
    strategy : Strategy
        How to combine updates.
    config : FederatedConfig
        Rounds, sampling, deadlines, bounds and the seed.
    metadata : SqlMetadataStore
        Where runs, rounds and metrics are recorded.
    artifacts : ArtifactStore
        Where round checkpoints (weights, strategy state) are kept.
    evaluate_fn : callable or None
        Centralized evaluation ``evaluate_fn(parameters) -> metrics`` after each round.
    on_round : callable or None
        Called with a :class:`RoundReport` after each round is checkpointed.
    """

    def __init__(
        self,
        transport: Transport,
        strategy: Strategy,
        *,
        config: FederatedConfig,
        metadata: SqlMetadataStore,
        artifacts: ArtifactStore,
        evaluate_fn: EvaluateFn | None = None,
        on_round: RoundCallback | None = None,
    ) -> None:
        if config.secure_aggregation.enabled:
            strategy.check_secure()
        self.transport = transport
        self.strategy = strategy
        self.config = config
        self.metadata = metadata
        self.artifacts = artifacts
        self.evaluate_fn = evaluate_fn
        self.on_round = on_round

    # -- run record ------------------------------------------------------------------------
    def _run_config(self) -> dict[str, Any]:
        return {
            "federated": self.config.model_dump(mode="json"),
            "strategy": {"name": self.strategy.name, "params": self.strategy.get_params()},
        }

    def start(
        self,
        project_id: Any,
        initial_parameters: Parameters,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        dataset_ids: Sequence[tuple[DatasetId, str]] = (),
    ) -> RunId:
        """Create the federated run and checkpoint the initial model as round 0.

        Parameters
        ----------
        project_id : ProjectId
            Owning project.
        initial_parameters : Parameters
            The starting global model.
        name : str or None
            Run name.
        tags : Mapping or None
            Run tags.
        dataset_ids : sequence of (DatasetId, role)
            Data sets the run uses (e.g. the central evaluation set).

        Returns
        -------
        RunId
            The run to pass to ``run``.
        """
        params = validate_parameters(initial_parameters, field="initial_parameters")
        run_config = self._run_config()
        flat = {
            **flatten_config({"federated": run_config["federated"]}),
            "strategy": self.strategy.name,
            **{f"strategy.{k}": v for k, v in run_config["strategy"]["params"].items()},
        }
        run = self.metadata.create_run(
            project_id,
            name=name,
            kind="federated",
            params=flat,
            tags={**dict(tags or {}), _CONFIG_TAG: _config_digest(run_config)},
            dataset_ids=dataset_ids,
        )
        self.strategy.initialize(params)
        self._checkpoint(run.id, 0, params, status="completed", clients=[], seconds=0.0, metrics={})
        return run.id

    def _resume(self, run_id: RunId) -> tuple[FlRound, Parameters]:
        """Check the run's config, load its last checkpoint into the strategy; return both.

        Raises
        ------
        NotFound
            When the run has no checkpoint.
        Conflict
            When this coordinator's config differs from the run's.
        """
        run = self.metadata.get_run(run_id)
        expected = run.tags.get(_CONFIG_TAG)
        if expected != _config_digest(self._run_config()):
            raise Conflict(
                f"run {run_id} was started with another federated or strategy configuration.",
                field="config",
                hint="Resume with the same fedloop.toml [federated] and [strategy] settings.",
            )
        last = self.metadata.latest_fl_round(run_id)
        if last is None:
            raise NotFound(f"run {run_id} has no round checkpoint.", field="run_id", value=run_id)
        params = decode_parameters(self.artifacts.get_bytes(last.parameters_digest))
        if last.state_digest:
            self.strategy.load_state_dict(
                decode_parameters(self.artifacts.get_bytes(last.state_digest))
            )
        else:
            self.strategy.initialize(params)
        return last, params

    def _fail(self, run_id: RunId, err: BaseException) -> None:
        """Mark the run failed (not on Ctrl-C, which leaves it resumable as it is)."""
        if not isinstance(err, KeyboardInterrupt):
            self.metadata.set_run_status(run_id, "failed", error=f"{type(err).__name__}: {err}")

    def _checkpoint(
        self,
        run_id: RunId,
        round_num: int,
        params: Parameters,
        *,
        status: str,
        clients: Sequence[FlClientRound],
        seconds: float,
        metrics: Mapping[str, float],
    ) -> FlRound:
        weights = self.artifacts.put_bytes(encode_parameters(params))
        state = self.strategy.state_dict()
        state_digest = (
            self.artifacts.put_bytes(encode_parameters(OrderedDict(state))).digest
            if state
            else None
        )
        return self.metadata.record_fl_round(
            run_id,
            round_num,
            status=status,
            parameters_digest=weights.digest,
            state_digest=state_digest,
            clients=clients,
            seconds=seconds,
            metrics=metrics,
        )

    def load_round(self, run_id: RunId, round_num: int | None = None) -> Parameters:
        """Return the global model checkpointed after a round (the last one by default).

        Raises
        ------
        NotFound
            When there is no such round.
        """
        rounds = self.metadata.list_fl_rounds(run_id)
        chosen = [r for r in rounds if round_num is None or r.round == round_num]
        if not chosen:
            raise NotFound(f"run {run_id} has no checkpoint for round {round_num}.", field="round")
        return decode_parameters(self.artifacts.get_bytes(chosen[-1].parameters_digest))
