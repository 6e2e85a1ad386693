"""``Coordinator``: the transport-free state machine of synchronous federated rounds.

select → broadcast → collect → validate → aggregate → evaluate → checkpoint, once per round.
Every round ends in one store transaction (global model and strategy state as artifacts, a
round row, one row per selected client, the round's metrics and an audit event), so a
coordinator killed at any point restarts from the last completed round. Client sampling and
client training are seeded from (seed, round, client), so the resumed run reproduces the
uninterrupted one bit for bit.
"""

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
    FederationError,
    NotFound,
    Parameters,
    RunId,
    decode_parameters,
    encode_parameters,
    validate_parameters,
)
from fedloop.federated.coordinator.validation import check_update
from fedloop.federated.messages import FitIns, FitOutcome
from fedloop.federated.strategies.base import ClientUpdate, Strategy
from fedloop.federated.transports.base import Transport
from fedloop.store import ArtifactStore, FlClientRound, FlRound, SqlMetadataStore

__all__ = ["Coordinator", "RoundReport", "select_clients"]

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


class Coordinator:
    """Run federated rounds over a transport, checkpointing each round in the store.

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

    Example
    -------
    >>> coordinator = Coordinator(transport, FedAvg(), config=cfg, metadata=ws.metadata,
    ...                           artifacts=ws.artifacts)  # doctest: +SKIP
    >>> run_id = coordinator.start(ws.project.id, initial_parameters, name="fraud-fl")
    >>> final = coordinator.run(run_id)
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
            The run to pass to :meth:`run`.
        """
        params = validate_parameters(initial_parameters, field="initial_parameters")
        run_config = self._run_config()
        flat = {
            **{f"federated.{k}": v for k, v in run_config["federated"].items()},
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

    # -- the loop --------------------------------------------------------------------------
    def run(self, run_id: RunId) -> Parameters:
        """Run (or resume) rounds until ``num_rounds`` are completed; return the final model.

        Parameters
        ----------
        run_id : RunId
            A run made by :meth:`start` (possibly by an earlier, killed coordinator).

        Returns
        -------
        OrderedDict[str, ndarray]
            The global model after the last round.

        Raises
        ------
        NotFound
            When the run has no checkpoint.
        Conflict
            When this coordinator's config differs from the run's.
        FederationError
            When too many consecutive rounds had too few clients.
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
        skipped = self._trailing_skipped(run_id)
        try:
            for round_num in range(last.round + 1, self.config.num_rounds + 1):
                params, report = self._round(run_id, round_num, params)
                skipped = skipped + 1 if report.status == "skipped" else 0
                if self.on_round is not None:
                    self.on_round(report)
                if skipped > self.config.max_skipped_rounds:
                    raise FederationError(
                        f"{skipped} consecutive rounds had fewer than "
                        f"{self.config.min_clients} usable updates.",
                        field="federated.min_clients",
                        hint="Check that clients are running, raise round_timeout_s or lower min_clients.",
                    )
        except BaseException as err:
            if not isinstance(err, KeyboardInterrupt):
                self.metadata.set_run_status(run_id, "failed", error=f"{type(err).__name__}: {err}")
            raise
        self.metadata.set_run_status(run_id, "finished")
        return params

    def _trailing_skipped(self, run_id: RunId) -> int:
        count = 0
        for r in reversed(self.metadata.list_fl_rounds(run_id)):
            if r.status != "skipped":
                break
            count += 1
        return count

    def _round(
        self, run_id: RunId, round_num: int, params: Parameters
    ) -> tuple[Parameters, RoundReport]:
        started = time.perf_counter()
        cfg = self.config
        available = list(self.transport.list_clients())
        wanted = cfg.clients_per_round or max(1, math.ceil(cfg.fraction_train * len(available)))
        selected = select_clients(
            available,
            round_num,
            seed=cfg.seed,
            num=math.ceil(wanted * (1 + cfg.over_selection)),
        )
        settings = {"local_epochs": cfg.local_epochs, **self.strategy.configure_train(round_num)}
        instructions = {c: FitIns(round_num, params, settings) for c in selected}
        outcomes = (
            self.transport.fit(
                round_num, instructions, timeout_s=cfg.round_timeout_s, enough=wanted
            )
            if selected
            else []
        )
        accepted, rows = self._screen(outcomes, params, round_num, wanted)
        if len(accepted) >= cfg.min_clients:
            new_params = self.strategy.aggregate_train(round_num, params, accepted)
            status = "completed"
        else:
            new_params, status = params, "skipped"
        metrics = self._metrics(accepted, rows, new_params, started)
        self._checkpoint(
            run_id,
            round_num,
            new_params,
            status=status,
            clients=rows,
            seconds=time.perf_counter() - started,
            metrics=metrics,
        )
        report = RoundReport(
            round_num=round_num,
            status=status,
            metrics=metrics,
            participants=[u.client_id for u in accepted],
            dropped={r.client_id: r.reason or r.status for r in rows if r.status != "ok"},
            seconds=time.perf_counter() - started,
        )
        return new_params, report

    def _screen(
        self, outcomes: Sequence[FitOutcome], params: Parameters, round_num: int, wanted: int
    ) -> tuple[list[ClientUpdate], list[FlClientRound]]:
        accepted: list[ClientUpdate] = []
        rows: list[FlClientRound] = []
        for out in sorted(outcomes, key=lambda o: o.client_id):
            status, reason, res = "ok", None, out.result
            if res is None:
                status = "timeout" if out.timed_out else "failed"
                reason = out.error or status
            else:
                reason = check_update(
                    res,
                    global_params=params,
                    round_num=round_num,
                    max_update_norm=self.config.max_update_norm,
                )
                if reason is not None:
                    status = "rejected"
                elif len(accepted) >= wanted:
                    status, reason = "unused", "enough updates were accepted already"
            if status == "ok" and res is not None:
                accepted.append(
                    ClientUpdate(
                        out.client_id,
                        res.parameters,
                        res.num_examples,
                        dict(res.metrics),
                        base_round=round_num - 1,
                    )
                )
            rows.append(
                FlClientRound(
                    client_id=out.client_id,
                    status=status,
                    reason=reason,
                    num_examples=res.num_examples if res is not None and status == "ok" else None,
                    metrics={
                        k: float(v)
                        for k, v in (res.metrics if res is not None else {}).items()
                        if isinstance(v, (int, float)) and math.isfinite(v)
                    },
                    bytes_up=out.bytes_up,
                    bytes_down=out.bytes_down,
                    seconds=out.seconds,
                )
            )
        return accepted, rows

    def _metrics(
        self,
        accepted: Sequence[ClientUpdate],
        rows: Sequence[FlClientRound],
        params: Parameters,
        started: float,
    ) -> dict[str, float]:
        metrics: dict[str, float] = {
            "participants": float(len(accepted)),
            "dropouts": float(
                sum(1 for r in rows if r.status in ("failed", "timeout", "rejected"))
            ),
            "bytes_up": float(sum(r.bytes_up for r in rows)),
            "bytes_down": float(sum(r.bytes_down for r in rows)),
        }
        total = sum(u.num_examples for u in accepted)
        if total and all("loss" in u.metrics for u in accepted):
            metrics["train_loss"] = (
                sum(u.metrics["loss"] * u.num_examples for u in accepted) / total
            )
        if self.evaluate_fn is not None:
            metrics.update(
                {
                    f"eval_{k}": float(v)
                    for k, v in self.evaluate_fn(params).items()
                    if math.isfinite(float(v))
                }
            )
        metrics["seconds"] = time.perf_counter() - started
        return metrics

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
