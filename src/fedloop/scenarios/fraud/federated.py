"""Federated fraud detection simulated on one machine: banks as virtual clients, one coordinator."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedloop.core import FedloopConfig, RunId, fingerprint_arrays
from fedloop.federated.client import AdapterClient
from fedloop.federated.coordinator import Coordinator, RoundReport
from fedloop.federated.profiling import collect_profile
from fedloop.federated.registration import register_federated_model
from fedloop.federated.simulation import LocalBackend, RayBackend
from fedloop.federated.strategies import make_strategy
from fedloop.federated.transports import InProcessTransport, Transport
from fedloop.learn import TorchAdapter, dirichlet_partition, iid_partition, mlp
from fedloop.scenarios.fraud.data import FraudData, make_fraudlike
from fedloop.store import Workspace

__all__ = ["MODEL_NAME", "make_client", "simulate"]

MODEL_NAME = "fraud-fl"


def _client_id(index: int) -> str:
    return f"bank-{index:03d}"


def _adapter(seed: int) -> TorchAdapter:
    return TorchAdapter(lambda: mlp(30), num_features=30, seed=seed)


@functools.lru_cache(maxsize=2)
def _silos(
    rows: int, num_clients: int, partition: str, alpha: float, seed: int
) -> tuple[FraudData, list[npt.NDArray[np.int64]]]:
    """Make the data and split its training rows over the banks (cached per process)."""
    data = make_fraudlike(rows, seed=seed)
    if partition != "dirichlet":
        return data, iid_partition(len(data.y_train), num_clients, seed=seed)
    parts = dirichlet_partition(data.y_train, num_clients, alpha=alpha, seed=seed)
    # With many clients a few draws come out empty; give each a row of the largest client so
    # every bank can train (a negligible change to the label skew).
    for i in [i for i, p in enumerate(parts) if len(p) == 0]:
        donor = max(range(len(parts)), key=lambda j: len(parts[j]))
        parts[i], parts[donor] = parts[donor][-1:], parts[donor][:-1]
    return data, parts


def make_client(
    client_id: str, *, rows: int, num_clients: int, partition: str, alpha: float, seed: int
) -> AdapterClient:
    """Build one bank's client (the factory that simulation workers import by name).

    Parameters
    ----------
    client_id : str
        ``bank-NNN``.
    rows, num_clients, partition, alpha, seed
        The simulation's data spec (every worker derives the same split).

    Returns
    -------
    AdapterClient
        The bank's client, holding only its own rows.
    """
    data, parts = _silos(rows, num_clients, partition, alpha, seed)
    idx = parts[int(client_id.rsplit("-", 1)[1])]
    return AdapterClient(client_id, _adapter, data.x_train[idx], data.y_train[idx], seed=seed)


def simulate(
    ws: Workspace,
    config: FedloopConfig,
    *,
    num_clients: int = 10,
    rows: int = 200_000,
    partition: str = "dirichlet",
    alpha: float = 0.5,
    resume: RunId | None = None,
    register: bool = True,
    backend: str = "local",
    num_workers: int | None = None,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Simulate federated training of the fraud MLP over ``num_clients`` banks.

    The data is the W-FL workload (fraudlike, Dirichlet label skew over clients); every bank is
    an :class:`AdapterClient` holding only its own rows; the coordinator checkpoints each round
    in the project's store, so ``resume=RUN_ID`` continues a run whose coordinator died.

    Parameters
    ----------
    ws : Workspace
        Open stores of the project.
    config : FedloopConfig
        ``[federated]`` and ``[strategy]`` settings.
    num_clients : int, default 10
        Banks.
    rows : int, default 200000
        Synthetic transactions before the 80/20 split.
    partition : {"dirichlet", "iid"}
        How rows are spread over banks.
    alpha : float, default 0.5
        Dirichlet concentration (smaller is more skewed).
    resume : RunId or None
        Continue this run instead of starting a new one.
    register : bool, default True
        Register the final model with its lineage.
    backend : {"local", "inprocess", "ray"}, default "local"
        A pool of worker processes hosting the virtual clients, this process, or Ray actors
        (extra ``ray``; one actor per CPU, many clients each).
    num_workers : int or None
        Worker processes of the local backend or actors of the Ray backend (default: one per
        CPU).
    ray_address : str or None
        Ray cluster to join (``"auto"``, ``"ray://host:10001"``); None starts Ray here.

    Returns
    -------
    dict
        Run id, final metrics, model version (when registered).
    """
    out = Console()
    fed = config.federated
    spec: dict[str, Any] = {
        "rows": rows,
        "num_clients": num_clients,
        "partition": partition,
        "alpha": alpha,
        "seed": fed.seed,
    }
    data, _ = _silos(rows, num_clients, partition, alpha, fed.seed)
    client_ids = [_client_id(i) for i in range(num_clients)]
    transport: Transport
    if backend == "local":
        transport = LocalBackend(
            f"{__name__}:make_client", client_ids, num_workers=num_workers, kwargs=spec
        )
    elif backend == "ray":
        transport = RayBackend(
            f"{__name__}:make_client",
            client_ids,
            num_actors=num_workers,
            kwargs=spec,
            address=ray_address,
        )
    else:
        transport = InProcessTransport({c: make_client(c, **spec) for c in client_ids})
    evaluator = _adapter(fed.seed)

    def evaluate(params: Any) -> dict[str, float]:
        evaluator.set_parameters(params)
        return evaluator.evaluate(data.x_test, data.y_test)

    strategy = make_strategy(config.strategy.name, **config.strategy.params)
    progress = Progress(
        TextColumn("round"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn(
            "AUC {task.fields[auc]}  loss {task.fields[loss]}  clients {task.fields[clients]}"
        ),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("rounds", total=fed.num_rounds, auc="-", loss="-", clients="-")

    def on_round(report: RoundReport) -> None:
        m = report.metrics
        progress.update(
            task,
            completed=report.round_num,
            auc=f"{m.get('eval_auc', float('nan')):.4f}",
            loss=f"{m.get('train_loss', float('nan')):.4f}",
            clients=f"{len(report.participants)}"
            + (f" (-{len(report.dropped)})" if report.dropped else ""),
        )

    coordinator = Coordinator(
        transport,
        strategy,
        config=fed,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
        evaluate_fn=evaluate,
        on_round=on_round,
    )
    test_ds = ws.metadata.register_dataset(
        ws.project.id,
        "fraudlike-test",
        fingerprint=fingerprint_arrays(data.x_test, data.y_test),
        num_rows=len(data.y_test),
        schema={"features": data.num_features, "label": "is_fraud"},
    )
    with progress, contextlib.closing(transport):
        if resume is None:
            run_id = coordinator.start(
                ws.project.id,
                _adapter(fed.seed).get_parameters(),
                name="fraud-federated",
                tags={"scenario": "fraud", "clients": str(num_clients), "partition": partition},
                dataset_ids=[(test_ds.id, "eval")],
            )
        else:
            run_id = resume
            done = ws.metadata.latest_fl_round(run_id)
            progress.update(task, completed=done.round if done else 0)
        final = coordinator.run(run_id)
        profile = None
        if register:
            profile = collect_profile(
                transport,
                final,
                signature=evaluator.signature(),
                round_num=fed.num_rounds + 1,
                timeout_s=fed.round_timeout_s,
            )
    rounds = ws.metadata.list_fl_rounds(run_id)
    last = rounds[-1].metrics
    table = Table(title=f"Federated run {run_id}", title_justify="left", header_style="bold")
    for column in ("round", "status", "clients", "dropouts", "train loss", "test AUC", "s"):
        table.add_column(column)
    for r in rounds[1:]:
        table.add_row(
            str(r.round),
            r.status,
            str(r.num_succeeded),
            str(int(r.metrics.get("dropouts", 0))),
            f"{r.metrics.get('train_loss', float('nan')):.4f}",
            f"{r.metrics.get('eval_auc', float('nan')):.4f}",
            f"{r.seconds:.2f}",
        )
    out.print(table)
    result: dict[str, Any] = {"run_id": run_id, "metrics": last, "rounds": len(rounds) - 1}
    if register:
        evaluator.set_parameters(final)
        mv = register_federated_model(
            ws,
            MODEL_NAME,
            run_id=run_id,
            weights=final,
            onnx_model=evaluator.to_onnx(),
            signature=evaluator.signature(),
            tags={"scenario": "fraud", "strategy": strategy.name},
            datasets=[(test_ds.id, "eval")],
            description=f"MLP 30-64-32-1, {strategy.name} over {num_clients} banks",
            profile=profile,
        )
        out.print(
            f"Registered [bold]{MODEL_NAME} v{mv.version}[/] with lineage over "
            f"{len(mv.contributors)} clients."
        )
        result["version"] = mv.version
    result["final_checksum"] = float(sum(float(np.abs(a).sum()) for a in final.values()))
    return result
