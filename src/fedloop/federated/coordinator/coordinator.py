"""``Coordinator``: the transport-free state machine of synchronous federated rounds.

select → broadcast → collect → validate → aggregate → evaluate → checkpoint, once per round.
Every round ends in one store transaction (global model and strategy state as artifacts, a
round row, one row per selected client, the round's metrics and an audit event), so a
coordinator killed at any point restarts from the last completed round. Client sampling and
client training are seeded from (seed, round, client), so the resumed run reproduces the
uninterrupted one bit for bit.

An asynchronous strategy (``strategy.asynchronous``, e.g. FedBuff) is run by
:class:`~fedloop.federated.coordinator.asynchronous.AsyncCoordinator` instead, when the
transport can run fits for several clients at once.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence

from fedloop.core import FederationError, FedloopWarning, Parameters, RunId
from fedloop.federated.coordinator._base import (
    CoordinatorBase,
    RoundReport,
    client_row,
    round_metrics,
    screen_outcome,
    select_clients,
)
from fedloop.federated.coordinator.asynchronous import AsyncCoordinator, concurrent_fit
from fedloop.federated.coordinator.secure import run_secure_round
from fedloop.federated.messages import FitIns, FitOutcome
from fedloop.federated.strategies.base import ClientUpdate
from fedloop.store import FlClientRound

__all__ = ["Coordinator", "RoundReport", "select_clients"]


class Coordinator(CoordinatorBase):
    """Run federated rounds over a transport, checkpointing each round in the store.

    With an asynchronous strategy (``strategy.asynchronous``, e.g. FedBuff), :meth:`run`
    hands the run to :class:`AsyncCoordinator` (a round is then one server step) unless the
    transport declares ``concurrent_fit = False``; then it warns and runs synchronous rounds,
    in which every update is fresh (staleness 0).

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
        if self.strategy.asynchronous:
            if concurrent_fit(self.transport) is not False:
                return AsyncCoordinator(
                    self.transport,
                    self.strategy,
                    config=self.config,
                    metadata=self.metadata,
                    artifacts=self.artifacts,
                    evaluate_fn=self.evaluate_fn,
                    on_round=self.on_round,
                ).run(run_id)
            warnings.warn(
                f"{type(self.transport).__name__} cannot run fits for several clients at once, "
                f"so the asynchronous strategy {self.strategy.name!r} runs in synchronous "
                "rounds: every update starts from the newest model (staleness 0).",
                FedloopWarning,
                stacklevel=2,
            )
        last, params = self._resume(run_id)
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
            self._fail(run_id, err)
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
        if cfg.secure_aggregation.enabled and selected:
            new_params, status, rows, participants, extra = self._secure(
                run_id, round_num, params, selected, wanted
            )
            accepted: list[ClientUpdate] = []
        else:
            settings = {
                "local_epochs": cfg.local_epochs,
                **self.strategy.configure_train(round_num),
            }
            instructions = {c: FitIns(round_num, params, settings) for c in selected}
            outcomes = (
                self.transport.fit(
                    round_num, instructions, timeout_s=cfg.round_timeout_s, enough=wanted
                )
                if selected
                else []
            )
            accepted, rows = self._screen(outcomes, params, round_num, wanted)
            participants, extra = [u.client_id for u in accepted], {}
            if len(accepted) >= cfg.min_clients:
                new_params = self.strategy.aggregate_train(round_num, params, accepted)
                status = "completed"
            else:
                new_params, status = params, "skipped"
        metrics = round_metrics(
            accepted,
            dropouts=sum(1 for r in rows if r.status in ("failed", "timeout", "rejected")),
            bytes_up=sum(r.bytes_up for r in rows),
            bytes_down=sum(r.bytes_down for r in rows),
            params=new_params,
            evaluate_fn=self.evaluate_fn,
            started=started,
            extra={**extra, **self.strategy.round_metrics()},
        )
        metrics["participants"] = float(len(participants))
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
            participants=participants,
            dropped={r.client_id: r.reason or r.status for r in rows if r.status != "ok"},
            seconds=time.perf_counter() - started,
        )
        return new_params, report

    def _secure(
        self,
        run_id: RunId,
        round_num: int,
        params: Parameters,
        selected: Sequence[str],
        wanted: int,
    ) -> tuple[Parameters, str, list[FlClientRound], list[str], dict[str, float]]:
        """Run the round under secure aggregation; return model, status, rows, who, metrics."""
        result = run_secure_round(
            self.transport,
            self.strategy,
            self.config,
            run_id=str(run_id),
            round_num=round_num,
            params=params,
            selected=selected,
            wanted=wanted,
        )
        total = result.total
        if total is None or total.count < self.config.min_clients:
            return params, "skipped", result.rows, [], result.metrics
        new_params = self.strategy.aggregate_secure(round_num, params, total)
        return new_params, "completed", result.rows, result.survivors, result.metrics

    def _screen(
        self, outcomes: Sequence[FitOutcome], params: Parameters, round_num: int, wanted: int
    ) -> tuple[list[ClientUpdate], list[FlClientRound]]:
        accepted: list[ClientUpdate] = []
        rows: list[FlClientRound] = []
        for out in sorted(outcomes, key=lambda o: o.client_id):
            status, reason = screen_outcome(
                out, params=params, round_num=round_num, max_update_norm=self.config.max_update_norm
            )
            if status == "ok" and len(accepted) >= wanted:
                status, reason = "unused", "enough updates were accepted already"
            res = out.result
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
            rows.append(client_row(out, status, reason))
        return accepted, rows
