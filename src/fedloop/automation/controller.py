"""The controller: reconciles each policy's actions from trigger to promotion or rollback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fedloop.automation.release import ReleaseMixin
from fedloop.automation.signals import find_trigger
from fedloop.automation.traffic import ServingStats, read_serving_stats
from fedloop.automation.training import Trainer, TrainingMixin, TrainingRequest, TrainingResult
from fedloop.core import AutomationConfig, Conflict, NotFound, Policy, StoreUnavailable
from fedloop.registry import CHAMPION, ModelRegistry
from fedloop.store import LoopAction, Workspace

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
class Decision:
    """One thing the controller did in a tick (every one is also an audit event)."""

    policy: str
    action_id: str
    state: str
    reason: str


class Controller(TrainingMixin, ReleaseMixin):
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
