"""The controller: reconciles each policy's actions from trigger to promotion or rollback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from fedloop.automation.policies import improvement, trainer_callable
from fedloop.automation.signals import find_trigger
from fedloop.automation.traffic import ServingStats, VersionTraffic, read_serving_stats
from fedloop.core import (
    AutomationConfig,
    Conflict,
    FedloopError,
    NotFound,
    Policy,
    StoreUnavailable,
)
from fedloop.registry import CHAMPION, ModelRegistry, clear_traffic, find_traffic, set_traffic
from fedloop.store import LoopAction, ModelVersion, MonitorWindow, Workspace

__all__ = [
    "Controller",
    "Decision",
    "Trainer",
    "TrainingRequest",
    "TrainingResult",
    "trigger_policy",
]

_log = logging.getLogger("fedloop.automation")


@dataclass(frozen=True)
class TrainingRequest:
    """What a trainer gets: the policy, the action, the champion to warm-start from.

    Attributes
    ----------
    ws : Workspace
        The project's stores.
    policy : Policy
        The policy that fired (``policy.action`` holds rounds and params).
    action : LoopAction
        The action (its ``id`` goes into the new version's tags; ``run_id`` is set when a
        previous attempt started a run that can be resumed).
    champion : ModelVersion or None
        The version to warm-start from (``policy.action.warm_start``) and to compare with.
    record_run : callable
        ``record_run(run_id)``: call it as soon as the training run exists, so a controller
        killed mid-training resumes that run instead of training twice.
    """

    ws: Workspace
    policy: Policy
    action: LoopAction
    champion: ModelVersion | None
    record_run: Callable[[str], None]


@dataclass(frozen=True)
class TrainingResult:
    """What a trainer returns: the registered challenger and its held-out comparison.

    Attributes
    ----------
    version : ModelVersion
        The challenger, registered with ``parent_version`` = the champion and tags
        ``loop_action`` (the action id) and ``trigger`` (the trigger's ref).
    holdout : Mapping[str, float]
        ``{"champion": m, "challenger": m}`` of the gate's metric on held-out data.
    """

    version: ModelVersion
    holdout: Mapping[str, float] = field(default_factory=dict)


class Trainer(Protocol):
    """A training job the controller runs for a policy (``action.trainer`` names one)."""

    def __call__(self, request: TrainingRequest) -> TrainingResult:
        """Train, register the challenger and compare it with the champion on held-out data."""
        ...


@dataclass(frozen=True)
class Decision:
    """One thing the controller did in a tick (every one is also an audit event)."""

    policy: str
    action_id: str
    state: str
    reason: str


class Controller:
    """Reconciles desired and actual state of each policy, one step per :meth:`tick`.

    All state is in the store (``loop_actions``, deployments, aliases), so a controller that is
    killed and restarted continues where it was: an action in ``training`` resumes its run
    (or adopts the version it already registered), an action ``rolling_out`` re-applies its
    current canary step and goes on checking it. Every move is an audit event with its reason.

    States: ``triggered`` -> ``training`` -> ``gating`` -> ``rolling_out`` (one step per canary
    fraction) -> ``promoted``; or ``rejected`` (the gate said no), ``rolled_back`` (the
    canary regressed), ``failed`` (training failed).

    Parameters
    ----------
    ws : Workspace
        The project's stores.
    config : AutomationConfig
        Policies and the tick interval.
    serving_url : str or None
        The inference server whose ``/metrics`` judge canary steps (error rate, p99). Without
        one, steps advance on time and the live metric only.
    stats_reader : callable or None
        ``stats_reader(url) -> ServingStats``; default: scrape ``/metrics``.
    trainers : Mapping[str, Trainer] or None
        Trainers by policy name, overriding ``action.trainer`` (embedding and tests).
    """

    def __init__(
        self,
        ws: Workspace,
        config: AutomationConfig,
        *,
        serving_url: str | None = None,
        stats_reader: Callable[[str], ServingStats] | None = None,
        trainers: Mapping[str, Trainer] | None = None,
    ) -> None:
        self.ws = ws
        self.config = config
        self.policies = {p.name: p for p in config.policies if p.enabled} if config.enabled else {}
        self.serving_url = serving_url
        self.registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        self._read_stats = stats_reader or read_serving_stats
        self._trainers = dict(trainers or {})
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedloop-train")
        self._training: dict[str, Future[TrainingResult]] = {}
        self._lock = threading.Lock()

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Tick every ``tick_s`` until ``stop`` is set (a store outage only delays a tick)."""
        while not stop.is_set():
            try:
                self.tick()
            except StoreUnavailable as err:
                _log.warning("controller: %s; retrying", err.message)
            except Exception:  # never let one bad tick end the loop
                _log.exception("controller tick failed")
            stop.wait(self.config.tick_s)

    def close(self) -> None:
        """Stop accepting training; a running training finishes in its thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> list[Decision]:
        """Observe triggers and move every open action one step."""
        decisions: list[Decision] = []
        with self._lock:
            stats = self._stats()
            for policy in self.policies.values():
                decisions += self._reconcile(policy, stats)
        return decisions

    def trigger_manually(self, policy_name: str, *, reason: str, actor: str) -> LoopAction:
        """Start an action for a policy now (see :func:`trigger_policy`)."""
        return trigger_policy(self.ws, self.policies, policy_name, reason=reason, actor=actor)

    # -- one policy ----------------------------------------------------------------------------
    def _stats(self) -> ServingStats | None:
        if self.serving_url is None:
            return None
        try:
            return self._read_stats(self.serving_url)
        except StoreUnavailable as err:
            _log.warning("controller: %s", err.message)
            return None

    def _reconcile(self, policy: Policy, stats: ServingStats | None) -> list[Decision]:
        metadata = self.ws.metadata
        open_actions = metadata.list_loop_actions(policy=policy.name, open_only=True)
        if not open_actions:
            history = metadata.list_loop_actions(policy=policy.name, limit=1)
            champion = metadata.find_alias(policy.model, CHAMPION)
            trigger = find_trigger(
                metadata,
                policy,
                champion_version=champion.version if champion else None,
                last_action=history[-1] if history else None,
                now=metadata.clock.now(),
            )
            if trigger is None:
                return []
            try:
                action = metadata.create_loop_action(
                    policy.name,
                    policy.model,
                    trigger_kind=trigger.kind,
                    trigger_ref=trigger.ref,
                    champion_version=champion.version if champion else None,
                    detail={"trigger": trigger.detail},
                    reason=trigger.reason,
                )
            except Conflict:
                return []  # this trigger was acted on already
            _log.info("%s: %s", policy.name, trigger.reason)
            return [Decision(policy.name, action.id, action.state, trigger.reason)]
        action = open_actions[-1]
        step = {
            "triggered": self._start_training,
            "training": self._follow_training,
            "gating": self._gate,
            "rolling_out": self._roll_out,
        }[action.state]
        decision = step(policy, action, stats)
        return [decision] if decision is not None else []

    def _move(
        self, policy: Policy, action: LoopAction, state: str | None, reason: str, **kw: Any
    ) -> Decision:
        moved = self.ws.metadata.update_loop_action(action.id, state=state, reason=reason, **kw)
        _log.info("%s: %s -> %s (%s)", policy.name, action.state, moved.state, reason)
        return Decision(policy.name, action.id, moved.state, reason)

    # -- training ------------------------------------------------------------------------------
    def _trainer(self, policy: Policy) -> Trainer:
        found = self._trainers.get(policy.name)
        if found is not None:
            return found
        trainer: Trainer = trainer_callable(policy)
        return trainer

    def _adopted(self, policy: Policy, action: LoopAction) -> ModelVersion | None:
        """Return a version this action already registered (the controller died before noting it)."""
        try:
            versions = self.ws.metadata.list_model_versions(policy.model)
        except NotFound:
            return None
        for mv in versions:
            if mv.tags.get("loop_action") == action.id:
                return mv
        return None

    def _submit(self, policy: Policy, action: LoopAction) -> None:
        champion = (
            self.ws.metadata.find_model_version(policy.model, action.champion_version)
            if action.champion_version is not None
            else None
        )

        def record_run(run_id: str) -> None:
            self.ws.metadata.update_loop_action(
                action.id, run_id=run_id, reason=f"training run {run_id}", event="automation.run"
            )

        request = TrainingRequest(self.ws, policy, action, champion, record_run)
        self._training[action.id] = self._pool.submit(self._trainer(policy), request)

    def _start_training(self, policy: Policy, action: LoopAction, _: Any) -> Decision:
        self._submit(policy, action)
        kind = policy.action.kind.replace("_", "-")
        start = "warm-started from" if policy.action.warm_start else "compared with"
        return self._move(
            policy,
            action,
            "training",
            f"{kind} retraining ({policy.action.rounds} rounds), {start} "
            f"v{action.champion_version}",
        )

    def _follow_training(self, policy: Policy, action: LoopAction, _: Any) -> Decision | None:
        future = self._training.get(action.id)
        if future is None:
            adopted = self._adopted(policy, action)
            if adopted is not None:  # trained before a restart: never train twice
                return self._move(
                    policy,
                    action,
                    "gating",
                    f"adopted v{adopted.version}, registered before a restart",
                    challenger_version=adopted.version,
                    detail={"holdout": {}},
                )
            self._submit(policy, action)  # resumes action.run_id when the trainer can
            note = f"resuming run {action.run_id}" if action.run_id else "restarting training"
            return self._move(policy, action, None, f"controller restarted: {note}")
        if not future.done():
            started = action.updated_at
            if (self.ws.metadata.clock.now() - started).total_seconds() > policy.action.timeout_s:
                self._training.pop(action.id, None)
                return self._move(
                    policy,
                    action,
                    "failed",
                    f"training took longer than action.timeout_s = {policy.action.timeout_s:g} s",
                )
            return None
        self._training.pop(action.id, None)
        try:
            result = future.result()
        except FedloopError as err:
            return self._move(policy, action, "failed", f"training failed: {err.message}")
        except Exception as err:  # a trainer's bug fails its action, not the controller
            _log.exception("trainer of %s failed", policy.name)
            return self._move(
                policy, action, "failed", f"training failed: {type(err).__name__}: {err}"
            )
        return self._move(
            policy,
            action,
            "gating",
            f"registered v{result.version.version}",
            challenger_version=result.version.version,
            detail={"holdout": dict(result.holdout)},
        )

    # -- the gate ------------------------------------------------------------------------------
    def _gate(self, policy: Policy, action: LoopAction, _: Any) -> Decision | None:
        gate = policy.gate
        passed: list[str] = []
        if gate.holdout and "holdout_passed" not in action.detail:
            holdout = action.detail.get("holdout", {})
            champion, challenger = holdout.get("champion"), holdout.get("challenger")
            if champion is None or challenger is None:
                passed.append("no held-out comparison from the trainer")
            else:
                gain = improvement(gate.metric, challenger=challenger, champion=champion)
                text = (
                    f"held-out {gate.metric}: challenger {challenger:.4f} vs champion "
                    f"{champion:.4f} (needs {gate.min_improvement:+g})"
                )
                if gain < gate.min_improvement:
                    return self._move(policy, action, "rejected", f"gate failed: {text}")
                passed.append(text)
        if gate.shadow_labels > 0:
            verdict = self._shadow_gate(policy, action)
            if verdict is None:
                return None  # still collecting labelled shadow predictions
            ok, text = verdict
            if not ok:
                clear_traffic(self.ws.metadata, policy.model, actor="controller", reason=text)
                return self._move(policy, action, "rejected", f"gate failed: {text}")
            passed.append(text)
        return self._begin_rollout(policy, action, "gate passed: " + "; ".join(passed))

    def _shadow_gate(self, policy: Policy, action: LoopAction) -> tuple[bool, str] | None:
        """Mirror traffic to the challenger, then compare both on the same labelled requests."""
        gate = policy.gate
        metadata = self.ws.metadata
        started_text = action.detail.get("shadow_started")
        if started_text is None:
            set_traffic(
                metadata,
                policy.model,
                shadow_ref=f"{policy.model}:{action.challenger_version}",
                actor="controller",
                reason=f"{policy.name}: shadow gate",
            )
            now = metadata.clock.now()
            metadata.update_loop_action(
                action.id,
                detail={"shadow_started": now.isoformat(), "holdout_passed": True},
                reason=f"mirroring traffic to v{action.challenger_version} for the shadow gate",
                event="automation.shadow",
            )
            return None
        started = datetime.fromisoformat(started_text)
        windows = metadata.list_monitor_windows(
            policy.model, version=action.challenger_version, kind="performance", since=started
        )
        labelled = sum(w.rows for w in windows)
        waited = (metadata.clock.now() - started).total_seconds()
        if labelled < gate.shadow_labels:
            if waited > gate.shadow_timeout_s:
                return False, (
                    f"only {labelled} of {gate.shadow_labels} labelled shadow predictions "
                    f"in {gate.shadow_timeout_s:g} s"
                )
            return None
        challenger = _mean_metric(windows, gate.metric)
        champion = _mean_metric(
            metadata.list_monitor_windows(
                policy.model, version=action.champion_version, kind="performance", since=started
            ),
            gate.metric,
        )
        if challenger is None or champion is None:
            return None
        gain = improvement(gate.metric, challenger=challenger, champion=champion)
        text = (
            f"shadow {gate.metric} on {labelled} labelled requests: challenger "
            f"{challenger:.4f} vs champion {champion:.4f}"
        )
        return gain >= gate.min_improvement, text

    # -- rollout -------------------------------------------------------------------------------
    def _begin_rollout(self, policy: Policy, action: LoopAction, reason: str) -> Decision:
        return self._apply_step(policy, action, 0, reason)

    def _apply_step(self, policy: Policy, action: LoopAction, index: int, reason: str) -> Decision:
        fraction = policy.rollout.steps[index]
        challenger = action.challenger_version
        set_traffic(
            self.ws.metadata,
            policy.model,
            canary_ref=f"{policy.model}:{challenger}",
            canary_fraction=fraction,
            actor="controller",
            reason=f"{policy.name}: canary step {index + 1}/{len(policy.rollout.steps)}",
        )
        # Scraped after the split moved (not the tick's scrape from before it): the step's
        # requests are counted from here.
        stats = self._stats()
        baseline = stats.find(policy.model, challenger) if stats and challenger else None
        return self._move(
            policy,
            action,
            "rolling_out",
            f"{reason}; v{challenger} at {fraction:.0%} of traffic",
            step=index,
            step_started_at=self.ws.metadata.clock.now(),
            detail={"step_baseline": _snapshot(baseline)},
        )

    def _roll_out(
        self, policy: Policy, action: LoopAction, stats: ServingStats | None
    ) -> Decision | None:
        rollout = policy.rollout
        challenger = action.challenger_version
        assert challenger is not None  # set when leaving training
        _ensure_step(self.ws, policy, action)
        started = action.step_started_at or action.updated_at
        elapsed = (self.ws.metadata.clock.now() - started).total_seconds()
        seen = stats.find(policy.model, challenger) if stats else None
        window = seen.since(_restore(action.detail.get("step_baseline"))) if seen else None
        requests = window.requests if window else 0.0
        if window is not None and requests >= 1:
            if window.error_rate > rollout.max_error_rate:
                return self._rollback(
                    policy,
                    action,
                    f"canary error rate {window.error_rate:.2%} > {rollout.max_error_rate:.2%}",
                )
            p99 = window.quantile_ms(0.99)
            if (
                p99 is not None
                and requests >= rollout.step_min_requests
                and p99 > rollout.max_p99_ms
            ):
                return self._rollback(
                    policy, action, f"canary p99 {p99:.0f} ms > {rollout.max_p99_ms:g} ms"
                )
        drop = self._metric_drop(policy, action, started)
        if drop is not None and drop > rollout.max_metric_drop:
            return self._rollback(
                policy, action, f"canary live {policy.gate.metric} {drop:.4f} below the champion's"
            )
        enough_requests = self.serving_url is None or requests >= rollout.step_min_requests
        if elapsed < rollout.step_min_s or not enough_requests:
            return None
        fraction = rollout.steps[action.step]
        evidence = f"{int(requests)} requests, {elapsed:.0f} s at {fraction:.0%} without regression"
        if action.step + 1 < len(rollout.steps):
            return self._apply_step(policy, action, action.step + 1, evidence)
        return self._promote(policy, action, evidence)

    def _metric_drop(self, policy: Policy, action: LoopAction, since: datetime) -> float | None:
        """How much worse the challenger's live metric is than the champion's since ``since``."""
        metric = policy.gate.metric

        def mean(version: int | None) -> float | None:
            if version is None:
                return None
            windows = self.ws.metadata.list_monitor_windows(
                policy.model, version=version, kind="performance", since=since
            )
            return _mean_metric(windows, metric)

        challenger, champion = mean(action.challenger_version), mean(action.champion_version)
        if challenger is None or champion is None:
            return None
        return -improvement(metric, challenger=challenger, champion=champion)

    def _rollback(self, policy: Policy, action: LoopAction, why: str) -> Decision:
        clear_traffic(
            self.ws.metadata, policy.model, actor="controller", reason=f"{policy.name}: {why}"
        )
        return self._move(policy, action, "rolled_back", f"rolled back: {why}")

    def _promote(self, policy: Policy, action: LoopAction, evidence: str) -> Decision:
        challenger = action.challenger_version
        assert challenger is not None
        reason = f"{policy.name}: {evidence}"
        self.registry.promote(
            policy.model, challenger, alias=CHAMPION, actor="controller", reason=reason
        )
        clear_traffic(self.ws.metadata, policy.model, actor="controller", reason=reason)
        return self._move(
            policy, action, "promoted", f"v{challenger} promoted to {CHAMPION}: {evidence}"
        )


def _ensure_step(ws: Workspace, policy: Policy, action: LoopAction) -> None:
    """Re-apply the action's canary step if the deployment record lost it (never strand traffic)."""
    spec = find_traffic(ws.metadata, policy.model)
    expected = f"{policy.model}:{action.challenger_version}"
    fraction = policy.rollout.steps[action.step]
    canary = spec.canary if spec is not None else None
    if canary is not None and canary.ref == expected and abs(canary.fraction - fraction) < 1e-9:
        return
    set_traffic(
        ws.metadata,
        policy.model,
        canary_ref=expected,
        canary_fraction=fraction,
        actor="controller",
        reason=f"{policy.name}: restoring canary step {action.step + 1}",
    )


def _mean_metric(windows: Sequence[MonitorWindow], metric: str) -> float | None:
    values = [float(v) for w in windows if (v := w.summary.get(metric)) is not None]
    return sum(values) / len(values) if values else None


def _snapshot(traffic: VersionTraffic | None) -> dict[str, Any] | None:
    if traffic is None:
        return None
    return {
        "requests": traffic.requests,
        "errors": traffic.errors,
        "buckets": [[le if le != float("inf") else "inf", c] for le, c in traffic.buckets],
    }


def _restore(data: Any) -> VersionTraffic | None:
    if not isinstance(data, dict):
        return None
    buckets = tuple(
        (float("inf") if le == "inf" else float(le), float(c)) for le, c in data.get("buckets", [])
    )
    return VersionTraffic(
        requests=float(data.get("requests", 0.0)),
        errors=float(data.get("errors", 0.0)),
        buckets=buckets,
    )


def trigger_policy(
    ws: Workspace,
    policies: Mapping[str, Policy],
    policy_name: str,
    *,
    reason: str,
    actor: str,
) -> LoopAction:
    """Record a manual trigger; the running controller carries the action out.

    Parameters
    ----------
    ws : Workspace
        The project's stores.
    policies : Mapping[str, Policy]
        The enabled policies by name.
    policy_name : str
        The policy to trigger.
    reason : str
        Why (audit).
    actor : str
        Who.

    Returns
    -------
    LoopAction
        The new action (state ``triggered``).

    Raises
    ------
    NotFound
        When no enabled policy has that name.
    Conflict
        When the policy has an action in progress.
    """
    policy = policies.get(policy_name)
    if policy is None:
        raise NotFound(
            f"no enabled policy named {policy_name!r}.",
            field="policy",
            value=policy_name,
            hint="List them with `fedloop config show` ([[automation.policies]]).",
        )
    if ws.metadata.list_loop_actions(policy=policy.name, open_only=True):
        raise Conflict(
            f"policy {policy.name!r} has an action in progress.",
            field="policy",
            value=policy.name,
            hint="Wait for it (fedloop loop list), then trigger again.",
        )
    champion = ws.metadata.find_alias(policy.model, CHAMPION)
    count = len(ws.metadata.list_loop_actions(policy=policy.name, limit=1_000_000))
    return ws.metadata.create_loop_action(
        policy.name,
        policy.model,
        trigger_kind="manual",
        trigger_ref=f"manual:{count + 1}",
        champion_version=champion.version if champion else None,
        reason=reason or "manual trigger",
        actor=actor,
    )
