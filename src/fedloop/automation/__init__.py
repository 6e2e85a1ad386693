"""Policies and the controller that reconciles desired and actual state (issue 6).

The policy helpers are light (config only); the controller, which opens the registry and the
store, and the reading of an inference server's metrics are imported on first use.
"""

from __future__ import annotations

import typing as _typing

from fedloop.automation.policies import (
    TriggerKind,
    check_trainer_path,
    find_policy,
    get_policy,
    improvement,
    load_policies,
    trainer_callable,
    trigger_kinds,
)
from fedloop.core import lazy_exports as _lazy_exports

__all__ = [
    "Controller",
    "Decision",
    "ServingStats",
    "Trainer",
    "TrainingRequest",
    "TrainingResult",
    "TriggerKind",
    "VersionTraffic",
    "check_trainer_path",
    "find_policy",
    "get_policy",
    "improvement",
    "load_policies",
    "parse_serving_stats",
    "read_serving_stats",
    "trainer_callable",
    "trigger_kinds",
    "trigger_policy",
]

if _typing.TYPE_CHECKING:
    from fedloop.automation.controller import Controller, Decision, trigger_policy
    from fedloop.automation.traffic import (
        ServingStats,
        VersionTraffic,
        parse_serving_stats,
        read_serving_stats,
    )
    from fedloop.automation.training import Trainer, TrainingRequest, TrainingResult

_CONTROLLER = "fedloop.automation.controller"
_TRAFFIC = "fedloop.automation.traffic"
_TRAINING = "fedloop.automation.training"
__getattr__ = _lazy_exports(
    __name__,
    {
        **{name: _CONTROLLER for name in ("Controller", "Decision", "trigger_policy")},
        **{
            name: _TRAFFIC
            for name in (
                "ServingStats",
                "VersionTraffic",
                "parse_serving_stats",
                "read_serving_stats",
            )
        },
        **{name: _TRAINING for name in ("Trainer", "TrainingRequest", "TrainingResult")},
    },
)
