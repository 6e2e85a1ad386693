"""Training for the controller: the trainer's request and result, and the training steps."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fedloop.automation.policies import trainer_callable
from fedloop.core import FedloopError, NotFound, Policy
from fedloop.store import LoopAction, ModelVersion, Workspace

if TYPE_CHECKING:
    from fedloop.automation.controller import Decision

__all__ = ["Trainer", "TrainingMixin", "TrainingRequest", "TrainingResult"]

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


class TrainingMixin:
    """The controller's ``triggered`` and ``training`` steps: the trainer runs in a worker thread.

    Mixed into :class:`~fedloop.automation.controller.Controller`, which sets the attributes
    below and moves the action (``_move``).
    """

    ws: Workspace
    _pool: ThreadPoolExecutor
    _training: dict[str, Future[TrainingResult]]
    _trainers: dict[str, Trainer]

    if TYPE_CHECKING:

        def _move(
            self, policy: Policy, action: LoopAction, state: str | None, reason: str, **kw: Any
        ) -> Decision: ...

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
