"""The fraud scenario's retraining job for the closed loop: federated, warm-started, profiled."""

from __future__ import annotations

import contextlib
from typing import Any

from fedloop.automation import TrainingRequest, TrainingResult
from fedloop.core import FederatedConfig, RunId
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.profiling import collect_profile
from fedloop.federated.registration import register_federated_model
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport
from fedloop.registry import ModelRegistry
from fedloop.scenarios.fraud.shift import (
    holdout_data,
    make_shift_client,
    make_world,
    shift_adapter,
)

__all__ = ["federated_round_trip", "retrain"]

_FACTORY = "fedloop.scenarios.fraud.shift:make_shift_client"


def _transport(params: dict[str, Any], regime: str, banks: tuple[str, ...]) -> Any:
    spec: dict[str, Any] = {
        "regime": regime,
        "rows": int(params.get("rows", 60_000)),
        "seed": int(params.get("seed", 0)),
        "world_seed": int(params.get("world_seed", 0)),
        "num_banks": len(banks),
        "hidden": list(params.get("hidden", (32, 16))),
    }
    if params.get("backend", "local") == "inprocess":
        return InProcessTransport({b: make_shift_client(b, **spec) for b in banks})
    # One worker process per bank: each bank's rows are generated in, and never leave, it.
    return LocalBackend(_FACTORY, list(banks), num_workers=len(banks), kwargs=spec)


def federated_round_trip(
    ws: Any,
    *,
    name: str,
    regime: str,
    params: dict[str, Any],
    rounds: int,
    initial: Any = None,
    resume: str | None = None,
    on_run: Any = None,
    on_round: Any = None,
    parent_version: int | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[Any, float]:
    """Train over the banks (federated), register the model with its federated profile.

    Returns
    -------
    (ModelVersion, float)
        The registered version and its held-out AUC on ``regime`` data.
    """
    world = make_world(int(params.get("world_seed", 0)))
    hidden = tuple(params.get("hidden", (32, 16)))
    seed = int(params.get("seed", 0))
    x_test, y_test = holdout_data(world, regime, rows=int(params.get("test_rows", 20_000)))
    evaluator = shift_adapter(seed, hidden=hidden)

    def evaluate(weights: Any) -> dict[str, float]:
        evaluator.set_parameters(weights)
        return evaluator.evaluate(x_test, y_test)

    fed = FederatedConfig(
        num_rounds=rounds,
        local_epochs=int(params.get("local_epochs", 1)),
        round_timeout_s=float(params.get("round_timeout_s", 300.0)),
        seed=seed,
    )
    transport = _transport(params, regime, world.banks)
    with contextlib.closing(transport):
        coordinator = Coordinator(
            transport,
            FedAvg(),
            config=fed,
            metadata=ws.metadata,
            artifacts=ws.artifacts,
            evaluate_fn=evaluate,
            on_round=on_round,
        )
        if resume is not None:
            run_id = RunId(resume)
        else:
            start = initial if initial is not None else evaluator.get_parameters()
            run_id = coordinator.start(
                ws.project.id, start, name=f"{name}-{regime}", tags={"scenario": "fraud-demo"}
            )
            if on_run is not None:
                on_run(run_id)
        final = coordinator.run(run_id)
        evaluator.set_parameters(final)
        profile = collect_profile(
            transport,
            final,
            signature=evaluator.signature(),
            round_num=rounds + 1,
            timeout_s=fed.round_timeout_s,
        )
    auc = float(evaluator.evaluate(x_test, y_test)["auc"])
    mv = register_federated_model(
        ws,
        name,
        run_id=run_id,
        weights=final,
        onnx_model=evaluator.to_onnx(),
        signature=evaluator.signature(),
        metrics={"auc": auc},
        tags={"scenario": "fraud-demo", "regime": regime, **(tags or {})},
        description=f"MLP 30-{'-'.join(map(str, hidden))}-1, FedAvg over {len(world.banks)} banks",
        profile=profile,
        parent_version=parent_version,
    )
    return mv, auc


def retrain(request: TrainingRequest) -> TrainingResult:
    """Retrain the champion over the banks' current data; compare both on held-out data.

    ``policy.action.params``: ``regime`` (the banks' data now; default ``after``), ``rows``,
    ``hidden``, ``seed``, ``world_seed``, ``backend`` (``local``: a process per bank;
    ``inprocess``), ``local_epochs``, ``test_rows``. Warm-starts from the champion when
    ``action.warm_start``; resumes the action's run after a controller restart.
    """
    ws, policy, action, champion = request.ws, request.policy, request.action, request.champion
    params = dict(policy.action.params)
    regime = str(params.get("regime", "after"))
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    initial = registry.load_weights(champion) if champion and policy.action.warm_start else None
    mv, auc = federated_round_trip(
        ws,
        name=policy.model,
        regime=regime,
        params=params,
        rounds=policy.action.rounds,
        initial=initial,
        resume=action.run_id,
        on_run=request.record_run,
        parent_version=champion.version if champion else None,
        tags={"loop_action": action.id, "trigger": action.trigger_ref},
    )
    holdout: dict[str, float] = {"challenger": auc}
    if champion is not None:
        world = make_world(int(params.get("world_seed", 0)))
        x, y = holdout_data(world, regime, rows=int(params.get("test_rows", 20_000)))
        old = shift_adapter(
            int(params.get("seed", 0)), hidden=tuple(params.get("hidden", (32, 16)))
        )
        old.set_parameters(registry.load_weights(champion))
        holdout["champion"] = float(old.evaluate(x, y)["auc"])
    return TrainingResult(version=mv, holdout=holdout)
