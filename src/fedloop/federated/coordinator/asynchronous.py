"""``AsyncCoordinator``: buffered asynchronous training (FedBuff) with clients always at work.

A fixed number of clients train at all times. Each update is screened as it arrives and given
to the strategy together with the model it started from, and the client that sent it (or
another one) is sent the newest model at once. A round in the store is one server step (a
buffer flush), checkpointed in one transaction as in the synchronous loop, so rounds, client
rows, metrics, the audit trail and resume work unchanged.

Completion order is decided by the clients and the wire, so a run over processes or a network
is not reproducible bit for bit (unlike the synchronous loop); each client's training is still
seeded from (seed, task, client), and with a transport whose completion order is fixed (the
scripted transports of the tests) the whole run is.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean

import numpy as np

from fedloop.core import (
    FederatedConfig,
    FederationError,
    InvalidInput,
    Parameters,
    RoundTimeout,
    RunId,
)
from fedloop.federated.coordinator._base import (
    CoordinatorBase,
    EvaluateFn,
    RoundCallback,
    RoundReport,
    client_row,
    round_metrics,
    screen_outcome,
    select_clients,
)
from fedloop.federated.messages import FitIns, FitOutcome
from fedloop.federated.strategies.base import ClientUpdate, Strategy
from fedloop.federated.transports.base import Transport
from fedloop.store import ArtifactStore, FlClientRound, FlRound, SqlMetadataStore

__all__ = ["AsyncCoordinator", "concurrent_fit"]

#: How often to look for clients again while a slot is free but nobody could be sent a task.
_POLL_S = 0.5
#: The transport enforces ``round_timeout_s``; the loop gives up on a task this much later.
_GRACE_S = 2.0


def concurrent_fit(transport: Transport) -> bool | None:
    """Say whether ``transport.fit`` may run for different clients in several threads at once.

    A transport declares it with a ``concurrent_fit`` attribute. ``True``: always, from the
    first call. ``False``: never (the HTTP transport serves one round at a time). Undeclared
    (``None``): yes once a first call has returned, because a transport may finish a lazy
    start-up in its first fit (the local simulation backend waits for its worker processes).

    Parameters
    ----------
    transport : Transport
        Any transport.

    Returns
    -------
    bool or None
        The declared value, or ``None``.
    """
    declared = getattr(transport, "concurrent_fit", None)
    return declared if isinstance(declared, bool) else None


@dataclass(frozen=True)
class _Task:
    num: int  # FitIns.round_num: unique per dispatch in a run; it seeds the client's training
    client_id: str
    params: Parameters  # the model sent
    base_step: int  # server steps done when it was sent (the store round of that model)
    base_call: int  # strategy calls made when it was sent (ClientUpdate.base_round)
    sent: float
    deadline: float


@dataclass(frozen=True)
class _Arrival:
    task: _Task
    outcome: FitOutcome
    status: str
    reason: str | None
    staleness: int
    update: ClientUpdate | None = None


class AsyncCoordinator(CoordinatorBase):
    """Run an asynchronous strategy with ``concurrency`` clients training at all times.

    **Loop.** Keep ``concurrency`` clients busy, where ``concurrency`` is
    ``config.clients_per_round`` or ``ceil(fraction_train * available)`` (the number a
    synchronous round would train at once). Each task is one ``transport.fit`` call for one
    client, made from its own thread, with ``timeout_s = round_timeout_s``; its
    ``FitIns.round_num`` is a task number unique within the run (it seeds the client's
    training). An update that arrives is screened (:func:`check_update` against the model it
    was sent; an update more than the strategy's ``max_staleness`` server steps old is
    rejected) and passed to ``aggregate_train`` alone, with ``base_round`` = the number of
    strategy calls made when its task was sent; then an idle client, drawn from
    ``(seed, task number)``, is sent the newest model. ``over_selection`` and ``min_clients``
    do not apply.

    **Rounds.** When the strategy takes a server step (FedBuff's ``server_steps`` grows, or,
    for a strategy without that attribute, the model changes), the new model is sent out and
    the step is checkpointed as the next round: one client row per client that answered since
    the previous step (several answers of one client are merged; ``metrics.updates`` counts
    them and ``metrics.staleness`` is their mean staleness), and the round's metrics with
    ``staleness_mean`` and ``staleness_max``. ``num_rounds`` counts server steps; answers
    still out when the last step is taken are not used.

    **Failures.** A failed, timed-out or rejected answer frees its slot for another client.
    ``(max_skipped_rounds + 1) * concurrency`` of them in a row fail the run, and so does
    ``round_timeout_s`` without any client to send a task to.

    **Resume.** :meth:`run` restarts from the last checkpointed step; tasks in flight and
    updates buffered since that step are lost (at most one step of work).

    Parameters
    ----------
    transport : Transport
        How to reach clients; its ``fit`` must be safe to call for different clients from
        several threads (see :func:`concurrent_fit`).
    strategy : Strategy
        An asynchronous strategy (``strategy.asynchronous``), e.g. :class:`FedBuff`.
    config : FederatedConfig
        Steps (``num_rounds``), concurrency, the client deadline, bounds and the seed.
    metadata : SqlMetadataStore
        Where runs, rounds and metrics are recorded.
    artifacts : ArtifactStore
        Where round checkpoints (weights, strategy state) are kept.
    evaluate_fn : callable or None
        Centralized evaluation ``evaluate_fn(parameters) -> metrics`` after each step.
    on_round : callable or None
        Called with a :class:`RoundReport` after each step is checkpointed.

    Raises
    ------
    InvalidInput
        When the strategy is not asynchronous (field ``strategy``).

    Example
    -------
    >>> coordinator = AsyncCoordinator(transport, FedBuff(buffer_size=4), config=cfg,
    ...                                metadata=ws.metadata, artifacts=ws.artifacts)  # doctest: +SKIP
    >>> final = coordinator.run(coordinator.start(ws.project.id, initial_parameters))
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
        if not strategy.asynchronous:
            raise InvalidInput(
                f"strategy {strategy.name!r} aggregates synchronous rounds; the asynchronous "
                "coordinator needs an asynchronous strategy such as fedbuff.",
                field="strategy",
                value=strategy.name,
                hint="Use Coordinator for synchronous strategies.",
            )
        super().__init__(
            transport,
            strategy,
            config=config,
            metadata=metadata,
            artifacts=artifacts,
            evaluate_fn=evaluate_fn,
            on_round=on_round,
        )

    def run(self, run_id: RunId) -> Parameters:
        """Run (or resume) server steps until ``num_rounds`` are checkpointed; return the model.

        Parameters
        ----------
        run_id : RunId
            A run made by :meth:`start` (possibly by an earlier, killed coordinator).

        Returns
        -------
        OrderedDict[str, ndarray]
            The global model after the last server step.

        Raises
        ------
        InvalidInput
            When the transport declares ``concurrent_fit = False``.
        NotFound
            When the run has no checkpoint.
        Conflict
            When this coordinator's config differs from the run's.
        FederationError
            When too many answers in a row were unusable.
        RoundTimeout
            When no client could be sent a task for ``round_timeout_s``.
        """
        if concurrent_fit(self.transport) is False:
            raise InvalidInput(
                f"{type(self.transport).__name__} cannot run fits for several clients at once.",
                field="transport",
                hint="Run it with Coordinator, which falls back to synchronous rounds.",
            )
        last, params = self._resume(run_id)
        try:
            params = _Loop(self, run_id, last, params).run()
        except BaseException as err:
            self._fail(run_id, err)
            raise
        self.metadata.set_run_status(run_id, "finished")
        return params


class _Loop:
    """The state of one :meth:`AsyncCoordinator.run` call (tasks out, answers since the step)."""

    def __init__(
        self, owner: AsyncCoordinator, run_id: RunId, last: FlRound, params: Parameters
    ) -> None:
        self.owner = owner
        self.cfg = owner.config
        self.run_id = run_id
        self.params = params
        self.steps = last.round
        done = [r.metrics for r in owner.metadata.list_fl_rounds(run_id)]
        # Strategy calls must keep growing across restarts: one per accepted update so far.
        self.calls = max(last.round, int(sum(m.get("participants", 0.0) for m in done)))
        self.tasks = int(sum(m.get("participants", 0.0) + m.get("dropouts", 0.0) for m in done))
        self.answers: queue.Queue[tuple[_Task, list[FitOutcome] | BaseException]] = queue.Queue()
        self.in_flight: dict[int, _Task] = {}
        self.busy: set[str] = set()  # clients whose fit has not returned (even if given up on)
        self.warm = concurrent_fit(owner.transport) is True
        self.concurrency = 1
        self.arrivals: list[_Arrival] = []
        self.step_started = time.perf_counter()
        self.unusable = 0
        self.idle_since: float | None = None

    def run(self) -> Parameters:
        while self.steps < self.cfg.num_rounds:
            self._fill()
            self._check_idle()
            arrival = self._collect()
            if arrival is not None and self._absorb(arrival):
                if self.steps < self.cfg.num_rounds:
                    self._fill()  # send the new model out before evaluating and checkpointing
                self._end_step()
        return self.params

    # -- sending ---------------------------------------------------------------------------
    def _fill(self) -> None:
        available = list(self.owner.transport.list_clients())
        cfg = self.cfg
        self.concurrency = cfg.clients_per_round or max(
            1, math.ceil(cfg.fraction_train * len(available))
        )
        target = self.concurrency if self.warm else 1
        idle = [c for c in available if c not in self.busy]
        while len(self.in_flight) < target and idle:
            self.tasks += 1
            client_id = select_clients(idle, self.tasks, seed=cfg.seed, num=1)[0]
            idle.remove(client_id)
            self._send(client_id)

    def _send(self, client_id: str) -> None:
        now = time.monotonic()
        task = _Task(
            self.tasks,
            client_id,
            self.params,
            self.steps,
            self.calls,
            now,
            now + self.cfg.round_timeout_s + _GRACE_S,
        )
        settings = {
            "local_epochs": self.cfg.local_epochs,
            **self.owner.strategy.configure_train(self.steps + 1),
        }
        self.in_flight[task.num] = task
        self.busy.add(client_id)
        ins = FitIns(task.num, self.params, settings)
        threading.Thread(
            target=self._call, args=(task, ins), name=f"fedloop-task-{task.num}", daemon=True
        ).start()

    def _call(self, task: _Task, ins: FitIns) -> None:
        """Run one client's fit (in its own thread) and hand the answer to the loop."""
        try:
            outcomes = self.owner.transport.fit(
                task.num, {task.client_id: ins}, timeout_s=self.cfg.round_timeout_s
            )
        except BaseException as err:  # re-raised by the loop's thread
            self.answers.put((task, err))
            return
        self.answers.put((task, outcomes))

    def _check_idle(self) -> None:
        if self.in_flight:
            self.idle_since = None
            return
        now = time.monotonic()
        self.idle_since = self.idle_since or now
        if now - self.idle_since > self.cfg.round_timeout_s:
            raise RoundTimeout(
                f"no client could be sent a task for {self.cfg.round_timeout_s:g} s "
                f"(available: {len(self.owner.transport.list_clients())}, "
                f"still busy: {len(self.busy)}).",
                field="federated.round_timeout_s",
                hint="Check that clients are running, or raise round_timeout_s.",
            )

    # -- receiving -------------------------------------------------------------------------
    def _collect(self) -> _Arrival | None:
        """Wait for the next answer, or a task's deadline, or the next look for clients."""
        timeout: float | None = None
        if self.in_flight:
            earliest = min(t.deadline for t in self.in_flight.values())
            timeout = max(0.0, earliest - time.monotonic())
        if len(self.in_flight) < self.concurrency:
            timeout = _POLL_S if timeout is None else min(timeout, _POLL_S)
        try:
            task, answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            return self._expire()
        self.busy.discard(task.client_id)
        if self.in_flight.pop(task.num, None) is None:
            return None  # given up on already
        if isinstance(answer, BaseException):
            raise answer
        self.warm = True
        outcome = next((o for o in answer if o.client_id == task.client_id), None)
        if outcome is None:
            outcome = FitOutcome(task.client_id, None, "the transport returned no outcome")
        return self._screen(task, outcome)

    def _expire(self) -> _Arrival | None:
        now = time.monotonic()
        overdue = sorted(n for n, t in self.in_flight.items() if t.deadline <= now)
        if not overdue:
            return None
        task = self.in_flight.pop(overdue[0])
        reason = f"no answer within round_timeout_s = {self.cfg.round_timeout_s:g} s"
        return self._screen(
            task, FitOutcome(task.client_id, None, reason, timed_out=True, seconds=now - task.sent)
        )

    def _screen(self, task: _Task, outcome: FitOutcome) -> _Arrival:
        staleness = self.steps - task.base_step
        status, reason = screen_outcome(
            outcome,
            params=task.params,
            round_num=task.num,
            max_update_norm=self.cfg.max_update_norm,
        )
        limit = getattr(self.owner.strategy, "max_staleness", None)
        if status == "ok" and isinstance(limit, int) and staleness > limit:
            status = "rejected"
            reason = f"update is {staleness} server steps old; max_staleness is {limit}"
        res = outcome.result
        update = None
        if status == "ok" and res is not None:
            update = ClientUpdate(
                task.client_id,
                res.parameters,
                res.num_examples,
                dict(res.metrics),
                base_round=task.base_call,
            )
        return _Arrival(task, outcome, status, reason, staleness, update)

    def _absorb(self, arrival: _Arrival) -> bool:
        """Record an answer and give its update to the strategy; return True on a server step."""
        self.arrivals.append(arrival)
        if arrival.update is None:
            self.unusable += 1
            limit = (self.cfg.max_skipped_rounds + 1) * max(1, self.concurrency)
            if self.unusable >= limit:
                raise FederationError(
                    f"{self.unusable} client answers in a row failed, timed out or were rejected.",
                    field="federated.max_skipped_rounds",
                    hint="Check the clients' logs (fedloop federated clients RUN_ID), raise "
                    "round_timeout_s or max_skipped_rounds.",
                )
            return False
        self.unusable = 0
        strategy = self.owner.strategy
        before = getattr(strategy, "server_steps", None)
        self.calls += 1
        new = strategy.aggregate_train(self.calls, self.params, [arrival.update])
        after = getattr(strategy, "server_steps", None)
        if isinstance(before, int) and isinstance(after, int):
            stepped = after > before
        else:
            stepped = any(not np.array_equal(new[n], self.params[n]) for n in self.params)
        self.params = new
        if stepped:
            self.steps += 1
        return stepped

    def _end_step(self) -> None:
        """Evaluate and checkpoint the step just taken, then report it."""
        arrivals, self.arrivals = self.arrivals, []
        accepted = [a.update for a in arrivals if a.update is not None]
        staleness = [a.staleness for a in arrivals if a.update is not None]
        metrics = round_metrics(
            accepted,
            dropouts=sum(1 for a in arrivals if a.update is None),
            bytes_up=sum(a.outcome.bytes_up for a in arrivals),
            bytes_down=sum(a.outcome.bytes_down for a in arrivals),
            params=self.params,
            evaluate_fn=self.owner.evaluate_fn,
            started=self.step_started,
            extra={
                "staleness_mean": fmean(staleness),
                "staleness_max": float(max(staleness)),
                **self.owner.strategy.round_metrics(),
            },
        )
        by_client: dict[str, list[_Arrival]] = {}
        for a in arrivals:
            by_client.setdefault(a.task.client_id, []).append(a)
        rows = [_merge(by_client[c]) for c in sorted(by_client)]
        seconds = time.perf_counter() - self.step_started
        self.owner._checkpoint(
            self.run_id,
            self.steps,
            self.params,
            status="completed",
            clients=rows,
            seconds=seconds,
            metrics=metrics,
        )
        self.step_started = time.perf_counter()
        report = RoundReport(
            round_num=self.steps,
            status="completed",
            metrics=metrics,
            participants=sorted({u.client_id for u in accepted}),
            dropped={r.client_id: r.reason or r.status for r in rows if r.status != "ok"},
            seconds=seconds,
        )
        if self.owner.on_round is not None:
            self.owner.on_round(report)


def _merge(arrivals: Sequence[_Arrival]) -> FlClientRound:
    """Return one client's row of a step from its answers in that step (usually one)."""
    rows = [client_row(a.outcome, a.status, a.reason) for a in arrivals]
    ok = [(a, r) for a, r in zip(arrivals, rows, strict=True) if a.update is not None]
    last = ok[-1][1] if ok else rows[-1]
    metrics = dict(last.metrics)
    if ok:
        metrics["updates"] = float(len(ok))
        metrics["staleness"] = fmean(a.staleness for a, _ in ok)
    reasons = [r.reason for r in rows if r.status != "ok" and r.reason]
    return FlClientRound(
        client_id=last.client_id,
        status=last.status,
        reason="; ".join(reasons) or None,
        num_examples=sum(r.num_examples or 0 for _, r in ok) if ok else None,
        metrics=metrics,
        bytes_up=sum(r.bytes_up for r in rows),
        bytes_down=sum(r.bytes_down for r in rows),
        seconds=sum(r.seconds for r in rows),
    )
