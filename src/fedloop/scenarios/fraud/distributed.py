"""Fraud detection trained data-parallel (PyTorch DDP): ``fedloop train`` and the loop's retrain job."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedloop.automation import TrainingRequest, TrainingResult
from fedloop.core import (
    DistributedConfig,
    FedloopConfig,
    InvalidInput,
    Parameters,
    RunId,
    fingerprint_arrays,
)
from fedloop.distributed import (
    DataParallelResult,
    train_data_parallel,
)
from fedloop.distributed import Progress as GroupProgress
from fedloop.distributed import register_data_parallel_model as register_model
from fedloop.learn import mlp_adapter
from fedloop.registry import ModelRegistry
from fedloop.scenarios.fraud.data import make_fraudlike
from fedloop.scenarios.fraud.shift import bank_data, bank_sizes, holdout_data, make_world
from fedloop.store import ModelVersion, Workspace

__all__ = ["ADAPTER", "MODEL_NAME", "retrain", "train"]

MODEL_NAME = "fraud-ddp"
#: The model factory every worker imports by name (it is light: no scikit-learn, no scenario).
ADAPTER = "fedloop.learn:mlp_adapter"


def _progress_bar(console: Console) -> tuple[Progress, Callable[[GroupProgress], None]]:
    bar = Progress(
        TextColumn("step"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn(
            "epoch {task.fields[epoch]}  loss {task.fields[loss]}  "
            "{task.fields[rate]} samples/s  restarts {task.fields[restarts]}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("train", total=None, epoch="-", loss="-", rate="-", restarts=0)

    def on_progress(p: GroupProgress) -> None:
        bar.update(
            task,
            total=p.total_steps,
            completed=min(p.step, p.total_steps),
            epoch=p.epoch + 1 if p.step < p.total_steps else p.epoch,
            loss="-" if p.train_loss is None else f"{p.train_loss:.4f}",
            rate="-" if p.samples_per_s is None else f"{p.samples_per_s:,.0f}",
            restarts=p.restarts,
        )

    return bar, on_progress


def _register(
    ws: Workspace,
    name: str,
    result: DataParallelResult,
    *,
    kwargs: Mapping[str, Any],
    auc: float,
    tags: Mapping[str, str],
    description: str,
    parent_version: int | None = None,
) -> ModelVersion:
    adapter = mlp_adapter(**kwargs)
    adapter.set_parameters(result.weights)
    return register_model(
        ws,
        name,
        result=result,
        onnx_model=adapter.to_onnx(),
        signature=adapter.signature(),
        metrics={"auc": auc},
        tags=tags,
        description=description,
        parent_version=parent_version,
    )


def train(
    ws: Workspace,
    config: FedloopConfig,
    *,
    rows: int = 200_000,
    epochs: int = 3,
    seed: int = 0,
    hidden: Sequence[int] = (64, 32),
    resume: RunId | None = None,
    register: bool = True,
) -> dict[str, Any]:
    """Train the W-FL MLP on the whole fraudlike train split with DDP; register it.

    The work of W-DDP: ``config.distributed.workers`` processes (gloo on CPU), batch 64 per
    worker, SGD lr 0.05; rank 0 checkpoints every ``checkpoint_every_steps`` steps and a
    killed worker restarts the group from the last checkpoint. Progress shows on stderr.

    Parameters
    ----------
    ws : Workspace
        Open stores of the project.
    config : FedloopConfig
        ``[distributed]`` settings.
    rows : int, default 200000
        Synthetic transactions before the 80/20 split.
    epochs : int, default 3
        Passes over the training split.
    seed : int, default 0
        Data, initialization and sampler seed.
    hidden : sequence of int, default (64, 32)
        Hidden widths of the MLP.
    resume : RunId or None
        Continue this run from its last checkpoint.
    register : bool, default True
        Register the final model (``fraud-ddp``) with its lineage.

    Returns
    -------
    dict
        Run id, steps, restarts, steps lost, samples/s, seconds, test AUC (and version).
    """
    console = Console(stderr=True)
    data = make_fraudlike(rows, seed=seed)
    kwargs: dict[str, Any] = {
        "num_features": data.num_features,
        "hidden": list(hidden),
        "seed": seed,
    }
    test_ds = ws.metadata.register_dataset(
        ws.project.id,
        "fraudlike-test",
        fingerprint=fingerprint_arrays(data.x_test, data.y_test),
        num_rows=len(data.y_test),
        schema={"features": data.num_features, "label": "is_fraud"},
    )
    bar, on_progress = _progress_bar(console)
    with bar:
        result = train_data_parallel(
            ws,
            config.distributed,
            adapter=ADAPTER,
            adapter_kwargs=kwargs,
            x=data.x_train,
            y=data.y_train,
            epochs=epochs,
            name="fraud-data-parallel",
            dataset_name="fraudlike-train",
            datasets=[(test_ds.id, "eval")],
            resume=resume,
            tags={"scenario": "fraud"},
            on_progress=on_progress,
        )
    evaluator = mlp_adapter(**kwargs)
    evaluator.set_parameters(result.weights)
    auc = float(evaluator.evaluate(data.x_test, data.y_test)["auc"])
    out: dict[str, Any] = {
        "run_id": result.run_id,
        "workers": result.workers,
        "steps": result.steps,
        "restarts": result.restarts,
        "steps_lost": result.steps_lost,
        "samples_per_s": result.samples_per_s,
        "seconds": result.seconds,
        "auc": auc,
    }
    if register:
        mv = _register(
            ws,
            MODEL_NAME,
            result,
            kwargs=kwargs,
            auc=auc,
            tags={"scenario": "fraud"},
            description=f"MLP 30-{'-'.join(map(str, hidden))}-1, DDP over {result.workers} workers",
        )
        out["version"] = mv.version
    table = Table(title=f"Data-parallel run {result.run_id}", title_justify="left")
    for column in ("workers", "steps", "restarts", "steps lost", "samples/s", "s", "test AUC"):
        table.add_column(column)
    rate = result.samples_per_s
    table.add_row(
        str(result.workers),
        str(result.steps),
        str(result.restarts),
        str(result.steps_lost),
        "-" if rate is None else f"{rate:,.0f}",
        f"{result.seconds:.1f}",
        f"{auc:.4f}",
    )
    console.print(table)
    if register:
        console.print(
            f"Registered [bold]{MODEL_NAME} v{out['version']}[/] with lineage over "
            f"{result.workers} workers ({result.restarts} restarts)."
        )
    return out


def _distributed_config(base: DistributedConfig, params: Mapping[str, Any]) -> DistributedConfig:
    """Apply ``workers``/``checkpoint_every_steps``/… from a policy's params over ``[distributed]``."""
    keys = set(DistributedConfig.model_fields) & set(params)
    try:
        return DistributedConfig.model_validate(
            {**base.model_dump(), **{k: params[k] for k in keys}}
        )
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "distributed"
        raise InvalidInput(
            f"`action.params.{key}`: {first['msg']}; got {first.get('input')!r}.",
            field=f"action.params.{key}",
            hint="Fix the policy's [automation.policies.action.params].",
        ) from err


def _pooled_train(world: Any, regime: str, rows: int) -> tuple[Any, Any]:
    parts = [bank_data(world, bank, regime, rows=n) for bank, n in bank_sizes(world, rows).items()]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def retrain(request: TrainingRequest) -> TrainingResult:
    """Retrain for the closed loop with DDP on the banks' pooled current data.

    The trainer of a policy with ``action.kind = "data_parallel"``; ``action.rounds`` are
    epochs. ``action.params``: ``regime`` (default ``after``), ``rows`` (pooled training rows,
    default 60000), ``hidden`` (default the demo's 32, 16), ``seed``, ``world_seed``,
    ``test_rows``, and any ``[distributed]`` key (``workers``, ``checkpoint_every_steps``,
    ``max_restarts``…) over the project's settings. Warm-starts from the champion when
    ``action.warm_start``; resumes the action's run after a controller restart.
    """
    ws, policy, action, champion = request.ws, request.policy, request.action, request.champion
    params = dict(policy.action.params)
    regime = str(params.get("regime", "after"))
    seed = int(params.get("seed", 0))
    world = make_world(int(params.get("world_seed", 0)))
    x, y = _pooled_train(world, regime, int(params.get("rows", 60_000)))
    kwargs: dict[str, Any] = {
        "num_features": int(x.shape[1]),
        "hidden": [int(h) for h in params.get("hidden", (32, 16))],
        "seed": seed,
    }
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    initial: Parameters | None = None
    if champion is not None and policy.action.warm_start:
        initial = registry.load_weights(champion)
    result = train_data_parallel(
        ws,
        _distributed_config(ws.config.distributed, params),
        adapter=ADAPTER,
        adapter_kwargs=kwargs,
        x=x,
        y=y,
        epochs=policy.action.rounds,
        name=f"{policy.model}-{regime}-data-parallel",
        dataset_name=f"fraud-banks-{regime}-pooled",
        initial=initial,
        resume=RunId(action.run_id) if action.run_id else None,
        tags={"scenario": "fraud-demo", "loop_action": action.id},
        on_run=request.record_run,
    )
    x_test, y_test = holdout_data(world, regime, rows=int(params.get("test_rows", 20_000)))
    challenger = mlp_adapter(**kwargs)
    challenger.set_parameters(result.weights)
    holdout = {"challenger": float(challenger.evaluate(x_test, y_test)["auc"])}
    mv = _register(
        ws,
        policy.model,
        result,
        kwargs=kwargs,
        auc=holdout["challenger"],
        tags={
            "scenario": "fraud-demo",
            "regime": regime,
            "loop_action": action.id,
            "trigger": action.trigger_ref,
        },
        description=f"MLP 30-{'-'.join(map(str, kwargs['hidden']))}-1, DDP on pooled bank data",
        parent_version=champion.version if champion else None,
    )
    if champion is not None:
        old = mlp_adapter(**kwargs)
        old.set_parameters(registry.load_weights(champion))
        holdout["champion"] = float(old.evaluate(x_test, y_test)["auc"])
    return TrainingResult(version=mv, holdout=holdout)
