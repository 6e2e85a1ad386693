"""Triggers: what, in the store, tells a policy to act (drift, a low live metric, a schedule)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fedloop.core import LOWER_IS_BETTER, Policy
from fedloop.store import LoopAction, MonitorWindow, SqlMetadataStore

__all__ = ["Trigger", "find_trigger"]


@dataclass(frozen=True)
class Trigger:
    """A reason for a policy to act now."""

    kind: str
    ref: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def _last_windows(
    metadata: SqlMetadataStore, model: str, version: int, kind: str, count: int
) -> list[MonitorWindow]:
    return metadata.list_monitor_windows(model, version=version, kind=kind, limit=count)


def _drift(metadata: SqlMetadataStore, policy: Policy, version: int) -> Trigger | None:
    need = policy.trigger.min_windows
    windows = _last_windows(metadata, policy.model, version, "drift", need)
    if len(windows) < need or any(w.verdict != "drift" for w in windows):
        return None
    last = windows[-1]
    columns = last.summary.get("drifted_columns", [])
    return Trigger(
        kind="drift",
        ref=f"window:{last.id}",
        reason=(
            f"drift in {need} consecutive window(s) of v{version} traffic "
            f"(last: {', '.join(columns[:6]) or 'multivariate'})"
        ),
        detail={"window_id": last.id, "drifted_columns": columns, "version": version},
    )


def _metric(metadata: SqlMetadataStore, policy: Policy, version: int) -> Trigger | None:
    metric, bound = policy.trigger.metric, policy.trigger.bound
    if metric is None or bound is None:
        return None
    need = policy.trigger.min_windows
    windows = _last_windows(metadata, policy.model, version, "performance", need)
    if len(windows) < need:
        return None
    values = [w.summary.get(metric) for w in windows]
    if any(v is None or not math.isfinite(float(v)) for v in values):
        return None
    numbers = [float(v) for v in values]  # type: ignore[arg-type]
    lower_better = metric in LOWER_IS_BETTER
    if not all(v > bound if lower_better else v < bound for v in numbers):
        return None
    last = windows[-1]
    relation = "above" if lower_better else "below"
    return Trigger(
        kind="metric",
        ref=f"window:{last.id}",
        reason=(
            f"live {metric} {numbers[-1]:.4f} {relation} {bound:g} in {need} window(s) "
            f"of v{version}"
        ),
        detail={"window_id": last.id, "metric": metric, "value": numbers[-1], "version": version},
    )


def _schedule(policy: Policy, last: LoopAction | None, now: datetime) -> Trigger | None:
    every = policy.trigger.every_s
    if every is None:
        return None
    if last is not None and (now - last.created_at).total_seconds() < every:
        return None
    slot = int(now.timestamp() // every)
    return Trigger(
        kind="schedule",
        ref=f"schedule:{slot}",
        reason=f"scheduled retraining (every {every:g} s)",
        detail={"slot": slot},
    )


def find_trigger(
    metadata: SqlMetadataStore,
    policy: Policy,
    *,
    champion_version: int | None,
    last_action: LoopAction | None,
    now: datetime,
) -> Trigger | None:
    """Return why ``policy`` should act now, or None.

    Drift and metric triggers look at the champion's latest monitor windows (``min_windows``
    in a row); a schedule fires once per ``every_s``. Nothing fires within ``cooldown_s`` of the
    policy's last action, and a window that already triggered an action (same ``ref``) is
    refused by the store, so one trigger never trains twice.
    """
    if last_action is not None:
        quiet = (now - last_action.updated_at).total_seconds()
        if quiet < policy.trigger.cooldown_s:
            return None
    if champion_version is not None:
        if policy.trigger.on_drift and (found := _drift(metadata, policy, champion_version)):
            return _fresh(found, last_action)
        if found := _metric(metadata, policy, champion_version):
            return _fresh(found, last_action)
    return _schedule(policy, last_action, now)


def _fresh(trigger: Trigger, last: LoopAction | None) -> Trigger | None:
    # A window already acted on (the last action's trigger) does not fire again.
    if last is not None and last.trigger_ref == trigger.ref:
        return None
    return trigger
