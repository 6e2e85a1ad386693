"""A store filled the way the dashboard sees one: federated runs, versions, a canary, windows, events."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from fedloop.core import (
    AutomationConfig,
    FederatedConfig,
    FedloopConfig,
    RunId,
    decode_parameters,
    resolve,
)
from fedloop.federated.registration import register_federated_model
from fedloop.registry import CHALLENGER, ModelRegistry, set_traffic
from fedloop.store import Workspace, open_workspace

MODEL = "fraud-fl"
FEATURES = [f"f{i}" for i in range(6)]
#: One policy so that the loop page has a trigger button (the trainer is only checked to exist).
AUTOMATION = {
    "policies": [
        {
            "name": "fraud-drift",
            "model": MODEL,
            "trigger": {"on_drift": True, "min_windows": 2},
            "action": {"kind": "federated", "trainer": "fedloop.scenarios.fraud.loop:retrain"},
        }
    ]
}


def serving_metrics() -> str:
    """Return an inference server's /metrics (fedloop serve's own metrics): v1 and a v3 canary.

    v1 answered 952 requests (2 of them 500), mostly in 3 ms; v3 answered 240 in 8 ms.
    """
    from prometheus_client import generate_latest

    from fedloop.serving import ServingMetrics

    metrics = ServingMetrics()
    for _ in range(950):
        metrics.observe_request(MODEL, "1", "v2", 200, 0.003)
    for _ in range(2):
        metrics.observe_request(MODEL, "1", "v2", 500, 0.003)
    for _ in range(240):
        metrics.observe_request(MODEL, "3", "v2", 200, 0.008)
    return generate_latest(metrics.registry).decode()


@dataclass
class FilledStore:
    """What :func:`fill_store` made."""

    ws: Workspace
    config: FedloopConfig
    run_id: RunId
    secure_run_id: RunId
    versions: list[int] = field(default_factory=list)


def _drift_summary(step: int) -> dict[str, Any]:
    columns = []
    for i, name in enumerate(FEATURES):
        effect = 0.02 + 0.01 * i + (0.12 * step if name in ("f1", "f4") else 0.0)
        drifted = effect > 0.1
        columns.append(
            {
                "column": name, "role": "feature", "test": "ks", "statistic": effect,
                "p_value": 1e-6 if drifted else 0.4, "adjusted_p_value": 1e-5 if drifted else 0.6,
                "effect": effect, "effect_name": "ks_distance", "effect_threshold": 0.1,
                "drifted": drifted, "reason": "p and effect past their bounds" if drifted else "",
            }
        )  # fmt: skip
    drifted_columns = [c["column"] for c in columns if c["drifted"]]
    return {
        "verdict": "drift" if drifted_columns else "no_drift",
        "num_tested": len(columns),
        "num_drifted": len(drifted_columns),
        "share_drifted": len(drifted_columns) / len(columns),
        "correction": "bh",
        "alpha": 0.05,
        "drifted_columns": drifted_columns,
        "columns": columns,
    }


def _windows(ws: Workspace) -> None:
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for step in range(3):
        begin = start + timedelta(minutes=10 * step)
        summary = _drift_summary(step)
        ws.metadata.record_monitor_window(
            MODEL, 1, kind="drift", start_time=begin, end_time=begin + timedelta(minutes=10),
            rows=500, verdict=summary["verdict"], summary=summary,
            event_kind="monitor.drift_detected" if summary["num_drifted"] else None,
            event_payload={"findings": [{"column": c} for c in summary["drifted_columns"]]},
        )  # fmt: skip
        ws.metadata.record_monitor_window(
            MODEL, 1, kind="performance", start_time=begin,
            end_time=begin + timedelta(minutes=10), rows=400, verdict="ok",
            summary={"count": 400, "auc": 0.95 - 0.08 * step, "precision": 0.6, "recall": 0.5},
        )  # fmt: skip


def fill_store(project_dir: Path) -> FilledStore:
    """Fill a new workspace the way a short closed loop would.

    Three real federated runs over three banks (in-process, 2 rounds each): FedAvg (v1,
    champion), DP-FedAvg under SecAgg (v2), FedAvg registered as v3 warm-started from v2 (the
    challenger, at a 20% canary); drift and performance windows of v1; an extra event.
    """
    from fedloop.scenarios.fraud.federated import simulate

    base = {"project": {"dir": str(project_dir)}, "automation": AUTOMATION}
    config = resolve({**base, "federated": {"num_rounds": 2}}, {}, {}).config
    secure = resolve(
        {
            **base,
            "federated": {"num_rounds": 2, "secure_aggregation": {"enabled": True}},
            "strategy": {
                "name": "dpfedavg",
                "params": {
                    "noise_multiplier": 0.8,
                    "clip_norm": 1.0,
                    "sampling_probability": 1.0,
                    "expected_clients_per_round": 3,
                },
            },
        },
        {},
        {},
    ).config
    ws = open_workspace(config)
    first = simulate(ws, config, num_clients=3, rows=3000, partition="iid", backend="inprocess")
    second = simulate(ws, secure, num_clients=3, rows=3000, partition="iid", backend="inprocess")
    third = simulate(
        ws, config, num_clients=3, rows=3000, partition="iid", backend="inprocess", register=False
    )
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    v2 = registry.get(f"{MODEL}:{second['version']}")
    last = ws.metadata.latest_fl_round(RunId(third["run_id"]))
    assert last is not None
    v3 = register_federated_model(
        ws,
        MODEL,
        run_id=RunId(third["run_id"]),
        weights=decode_parameters(ws.artifacts.get_bytes(last.parameters_digest)),
        onnx_model=registry.load_onnx(v2),
        parent_version=v2.version,
        tags={"loop_action": "manual", "trigger": "window:3"},
        description="retrained by the loop, warm-started from v2",
        actor="controller",
    )
    registry.promote(MODEL, v3.version, alias=CHALLENGER, actor="controller", reason="gate passed")
    for step, share in enumerate((0.1, 0.2), start=1):
        set_traffic(
            ws.metadata, MODEL, canary_ref=f"{MODEL}@{CHALLENGER}", canary_fraction=share,
            actor="controller", reason=f"canary step {step} of 3",
        )  # fmt: skip
    _windows(ws)
    ws.metadata.append_event("ui.note", f"model:{MODEL}", {"note": "<b>not markup</b>"})
    return FilledStore(
        ws, config, RunId(first["run_id"]), RunId(second["run_id"]), [1, 2, v3.version]
    )


def automation_config() -> AutomationConfig:
    """Return the policies of the filled store (for a controller over it)."""
    return AutomationConfig.model_validate(AUTOMATION)


class _SlowClient:
    """A numpy client that takes ``delay_s`` per round (so a page can watch rounds arrive)."""

    def __init__(self, offset: float, delay_s: float) -> None:
        self.offset = offset
        self.delay_s = delay_s

    def fit(self, ins: Any) -> Any:
        from fedloop.federated.messages import FitRes

        time.sleep(self.delay_s)
        params = OrderedDict((k, v + np.float32(self.offset)) for k, v in ins.parameters.items())
        loss = 1.0 / (ins.round_num + self.offset)
        return FitRes(params, 20, {"loss": loss}, round_num=ins.round_num)


def start_slow_run(
    ws: Workspace, *, num_rounds: int, delay_s: float
) -> tuple[RunId, threading.Thread]:
    """Start a federated run whose rounds finish every ``delay_s`` in a thread; return its id."""
    from fedloop.federated.coordinator import Coordinator
    from fedloop.federated.strategies import FedAvg
    from fedloop.federated.transports import InProcessTransport

    clients = {f"bank-{i}": _SlowClient(0.1 * (i + 1), delay_s) for i in range(3)}
    coordinator = Coordinator(
        InProcessTransport(clients),  # type: ignore[arg-type]
        FedAvg(),
        config=FederatedConfig(num_rounds=num_rounds, round_timeout_s=30.0),
        metadata=ws.metadata,
        artifacts=ws.artifacts,
        evaluate_fn=lambda params: {"auc": 0.8, "loss": 0.4},
    )
    initial = OrderedDict([("w", np.zeros((4, 2), np.float32)), ("b", np.zeros(2, np.float32))])
    run_id = coordinator.start(ws.project.id, initial, name="live-run")
    thread = threading.Thread(target=coordinator.run, args=(run_id,), daemon=True)
    thread.start()
    return run_id, thread
