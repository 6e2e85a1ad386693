"""Releasing a challenger for the controller: the gate, canary steps, rollback, promotion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fedloop.automation.policies import improvement
from fedloop.automation.traffic import ServingStats, VersionTraffic
from fedloop.core import Policy
from fedloop.registry import CHAMPION, ModelRegistry, clear_traffic, find_traffic, set_traffic
from fedloop.store import LoopAction, MonitorWindow, Workspace

if TYPE_CHECKING:
    from fedloop.automation.controller import Decision

__all__ = ["ReleaseMixin"]


class ReleaseMixin:
    """The controller's ``gating`` and ``rolling_out`` steps, up to promotion or rollback.

    Mixed into :class:`~fedloop.automation.controller.Controller`, which sets the attributes
    below, scrapes the inference server (``_stats``) and moves the action (``_move``).
    """

    ws: Workspace
    registry: ModelRegistry
    serving_url: str | None

    if TYPE_CHECKING:

        def _stats(self) -> ServingStats | None: ...

        def _move(
            self, policy: Policy, action: LoopAction, state: str | None, reason: str, **kw: Any
        ) -> Decision: ...

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
