"""The [automation] section of fedloop.toml: the closed loop's retrain policies."""

from __future__ import annotations

import itertools
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedloop.core.config_sources import FieldCheckError

__all__ = [
    "LOWER_IS_BETTER",
    "ActionPolicy",
    "AutomationConfig",
    "GatePolicy",
    "LiveMetric",
    "Policy",
    "RolloutPolicy",
    "TriggerPolicy",
]

#: Metrics the monitor computes on labelled live traffic (and a gate on held-out data).
LiveMetric = Literal["auc", "precision", "recall", "f1", "brier", "ece"]
#: Of those, the ones where a lower value is better (errors, not scores).
LOWER_IS_BETTER: frozenset[str] = frozenset({"brier", "ece"})

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
_MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,199}$"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_TRAINER_PATTERN = rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$"
_WEEK_S = 7 * 86_400.0
_YEAR_S = 365 * 86_400.0


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TriggerPolicy(_Section):
    """When a policy acts; a policy can always also be started by hand.

    Parameters
    ----------
    on_drift : bool, default False
        Act on a drift verdict of a window of the champion's live traffic.
    metric : {"auc", "precision", "recall", "f1", "brier", "ece"} or None, default None
        Act when this live metric (over labelled traffic) crosses a bound; needs ``below``
        (auc, precision, recall, f1: higher is better) or ``above`` (brier, ece).
    below : float or None, default None
        The bound of a higher-is-better ``metric``, in [0, 1].
    above : float or None, default None
        The bound of a lower-is-better ``metric``, in [0, 1].
    min_windows : int, default 1
        Consecutive monitor windows that must show the drift or the metric crossing.
    every_s : float or None, default None
        Act on a schedule: every this many seconds after the last action.
    cooldown_s : float, default 600
        No trigger fires this soon (seconds) after the policy's last action.
    manual_only : bool, default False
        The policy has no automatic trigger: it runs only when started by hand. Excludes
        ``on_drift``, ``metric`` and ``every_s``; without it, at least one of them is needed.
    """

    on_drift: bool = Field(default=False, description="Act on a drift verdict.")
    metric: LiveMetric | None = Field(default=None, description="Live metric to watch.")
    below: float | None = Field(
        default=None, ge=0, le=1, description="Bound of a higher-is-better metric."
    )
    above: float | None = Field(
        default=None, ge=0, le=1, description="Bound of a lower-is-better metric."
    )
    min_windows: int = Field(
        default=1, ge=1, le=1_000, description="Consecutive windows that must show it."
    )
    every_s: float | None = Field(
        default=None, ge=1, le=_YEAR_S, description="Schedule: seconds between actions."
    )
    cooldown_s: float = Field(
        default=600.0, ge=0, le=_YEAR_S, description="Quiet seconds after an action."
    )
    manual_only: bool = Field(default=False, description="Run only when started by hand.")

    @property
    def bound(self) -> float | None:
        """Return the bound of ``metric``: ``below`` or ``above``, whichever applies (or None).

        Returns
        -------
        float or None
            The trigger fires when the metric is worse than this (lower, or higher for
            brier and ece).
        """
        return self.above if self.metric in LOWER_IS_BETTER else self.below

    @model_validator(mode="after")
    def _check_sources(self) -> Self:
        if self.metric is not None:
            bound, other = (
                ("above", "below") if self.metric in LOWER_IS_BETTER else ("below", "above")
            )
            if getattr(self, other) is not None:
                better = "lower" if bound == "above" else "higher"
                raise FieldCheckError(
                    f"does not apply to {self.metric} ({better} is better): use `{bound}`",
                    loc=(other,),
                    value=getattr(self, other),
                )
            if getattr(self, bound) is None:
                raise FieldCheckError(
                    f"needs a bound: set `{bound}` next to `metric = {self.metric!r}`",
                    loc=("metric",),
                    value=self.metric,
                )
        for orphan in ("below", "above"):
            if self.metric is None and getattr(self, orphan) is not None:
                raise FieldCheckError(
                    "needs `metric` (the live metric it bounds) in the same table",
                    loc=(orphan,),
                    value=getattr(self, orphan),
                )
        automatic = self.on_drift or self.metric is not None or self.every_s is not None
        if self.manual_only and automatic:
            raise FieldCheckError(
                "excludes on_drift, metric and every_s: remove them or set manual_only = false",
                loc=("manual_only",),
                value=True,
            )
        if not self.manual_only and not automatic:
            raise FieldCheckError(
                "has no trigger: set on_drift = true, metric with below/above, or every_s; "
                "or manual_only = true for a policy started only by hand",
                loc=(),
                value=self.model_dump(exclude_defaults=True),
            )
        return self


class ActionPolicy(_Section):
    """What a policy does when triggered: train a challenger and register it.

    Parameters
    ----------
    kind : {"federated", "data_parallel"}
        Federated rounds across the silos, or data-parallel training on pooled data.
    trainer : str
        ``package.module:function`` that trains and registers the challenger; imported only
        when the policy acts.
    warm_start : bool, default True
        Start from the champion's weights instead of a fresh initialisation.
    rounds : int, default 5
        Federated rounds (``kind = "federated"``) or epochs (``kind = "data_parallel"``).
    timeout_s : float, default 3600
        A training that runs longer is stopped and counted as failed.
    params : dict, default {}
        Free-form keyword arguments passed to the trainer.
    """

    kind: Literal["federated", "data_parallel"] = Field(description="How the challenger trains.")
    trainer: str = Field(
        pattern=_TRAINER_PATTERN, max_length=300, description="Dotted `module:function`."
    )
    warm_start: bool = Field(default=True, description="Start from the champion's weights.")
    rounds: int = Field(default=5, ge=1, le=100_000, description="Rounds or epochs.")
    timeout_s: float = Field(
        default=3_600.0, gt=0, le=_WEEK_S, description="Longest a training may run."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Trainer keyword arguments.")


class GatePolicy(_Section):
    """Whether a challenger may replace the champion.

    The challenger passes when, on every comparison enabled, its ``metric`` is at least
    ``min_improvement`` better than the champion's (higher, or lower for brier and ece).

    Parameters
    ----------
    holdout : bool, default True
        Compare on held-out data (the trainer's evaluation split).
    metric : {"auc", "precision", "recall", "f1", "brier", "ece"}, default "auc"
        The metric compared.
    min_improvement : float, default 0.0
        Required margin, in [-1, 1] (negative tolerates a small loss).
    shadow_labels : int, default 0
        When positive, the challenger also shadows live traffic until this many of its
        predictions have labels, and is compared with the champion on them.
    shadow_timeout_s : float, default 86400
        The challenger is rejected when the shadow labels have not arrived by then.
    """

    holdout: bool = Field(default=True, description="Compare on held-out data.")
    metric: LiveMetric = Field(default="auc", description="Metric compared.")
    min_improvement: float = Field(
        default=0.0, ge=-1, le=1, description="Margin the challenger must beat the champion by."
    )
    shadow_labels: int = Field(
        default=0, ge=0, le=100_000_000, description="Labelled shadow predictions to compare on."
    )
    shadow_timeout_s: float = Field(
        default=86_400.0, gt=0, le=_YEAR_S, description="Longest wait for the shadow labels."
    )

    @model_validator(mode="after")
    def _check_comparison(self) -> Self:
        if not self.holdout and self.shadow_labels == 0:
            raise FieldCheckError(
                "compares nothing: set holdout = true and/or shadow_labels > 0",
                loc=("holdout",),
                value=False,
            )
        return self


class RolloutPolicy(_Section):
    """How a challenger that passed the gate reaches all traffic, and when it is rolled back.

    Parameters
    ----------
    steps : tuple of float, default (0.1, 0.5, 1.0)
        Canary fractions of traffic, strictly increasing in (0, 1] and ending at 1.0
        (promotion to champion); the environment takes a comma-separated list.
    step_min_requests : int, default 200
        Requests the canary must serve at a step before it may advance.
    step_min_s : float, default 10
        Seconds the canary must stay at a step before it may advance.
    max_error_rate : float, default 0.02
        Roll back when the canary's error rate at a step exceeds this, in [0, 1] (1: never).
    max_p99_ms : float, default 500
        Roll back when the canary's p99 latency (milliseconds) exceeds this.
    max_metric_drop : float, default 0.02
        Roll back when the canary's live value of the gate's ``metric`` is worse than the
        champion's by more than this, in [0, 1] (1: never).
    """

    steps: tuple[float, ...] = Field(
        default=(0.1, 0.5, 1.0), min_length=1, max_length=100, description="Canary fractions."
    )
    step_min_requests: int = Field(
        default=200, ge=0, le=1_000_000_000, description="Requests served before advancing."
    )
    step_min_s: float = Field(
        default=10.0, ge=0, le=_WEEK_S, description="Seconds at a step before advancing."
    )
    max_error_rate: float = Field(
        default=0.02, ge=0, le=1, description="Error rate that rolls back."
    )
    max_p99_ms: float = Field(
        default=500.0, gt=0, le=600_000, description="p99 latency (ms) that rolls back."
    )
    max_metric_drop: float = Field(
        default=0.02, ge=0, le=1, description="Metric loss against the champion that rolls back."
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _split_steps(cls, value: Any) -> Any:
        # The environment can only hold strings: FEDLOOP_AUTOMATION__POLICIES__0__ROLLOUT__STEPS.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        increasing = all(a < b for a, b in itertools.pairwise(value))
        if not increasing or value[0] <= 0 or value[-1] != 1.0:
            raise ValueError("must be strictly increasing in (0, 1] and end at 1.0")
        return value


class Policy(_Section):
    """One closed-loop policy: trigger, action, gate and rollout for one registered model.

    Parameters
    ----------
    name : str
        Unique among the policies; letters, digits, ``_``, ``.`` and ``-``.
    model : str
        The registered model it watches and retrains (its ``champion`` alias).
    enabled : bool, default True
        A disabled policy is kept in the file but never acts.
    trigger : TriggerPolicy
        When it acts.
    action : ActionPolicy
        How the challenger is trained.
    gate : GatePolicy
        Whether the challenger may replace the champion.
    rollout : RolloutPolicy
        How it reaches all traffic, and when it is rolled back.
    """

    name: str = Field(pattern=_NAME_PATTERN, description="Unique policy name.")
    model: str = Field(pattern=_MODEL_PATTERN, description="Registered model name.")
    enabled: bool = Field(default=True, description="Whether the policy acts.")
    trigger: TriggerPolicy = Field(description="When the policy acts.")
    action: ActionPolicy = Field(description="How the challenger is trained.")
    gate: GatePolicy = Field(default=GatePolicy(), description="Challenger vs champion.")
    rollout: RolloutPolicy = Field(default=RolloutPolicy(), description="Canary steps.")


class AutomationConfig(_Section):
    """The controller that closes the loop (``[automation]`` and ``[[automation.policies]]``).

    Parameters
    ----------
    enabled : bool, default True
        When false, no policy acts (``FEDLOOP_AUTOMATION__ENABLED=false`` stops them all).
    tick_s : float, default 5.0
        Seconds between two reconciliations of the controller.
    policies : tuple of Policy, default ()
        The policies, one ``[[automation.policies]]`` table each; names are unique.
    """

    enabled: bool = Field(default=True, description="Whether any policy acts.")
    tick_s: float = Field(default=5.0, gt=0, le=3_600, description="Reconciliation interval.")
    policies: tuple[Policy, ...] = Field(
        default=(), max_length=1_000, description="The retrain policies."
    )

    @model_validator(mode="after")
    def _check_unique_names(self) -> Self:
        seen: dict[str, int] = {}
        for index, policy in enumerate(self.policies):
            if policy.name in seen:
                raise FieldCheckError(
                    f"is already the name of automation.policies[{seen[policy.name]}]: "
                    "give each policy its own name",
                    loc=("policies", index, "name"),
                    value=policy.name,
                )
            seen[policy.name] = index
        return self
