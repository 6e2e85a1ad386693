"""The quickstart flow: train a fraud model, track it, register it with lineage, promote it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedloop.core import fingerprint_arrays
from fedloop.learn import TorchAdapter, mlp
from fedloop.monitoring import attach_reference
from fedloop.registry import CHALLENGER, CHAMPION, ModelRegistry
from fedloop.scenarios.fraud.data import make_fraudlike
from fedloop.store import Workspace, start_run

__all__ = ["MODEL_NAME", "run"]

MODEL_NAME = "fraud-detector"


def run(ws: Workspace, *, rows: int = 200_000, epochs: int = 3, seed: int = 0) -> dict[str, Any]:
    """Run the quickstart against a workspace and print its story.

    1. Make synthetic card transactions (about 3% fraud) and record both splits as data sets.
    2. Train the 30-64-32-1 MLP, logging loss per step and test AUC per epoch (buffered).
    3. Export ONNX, check it against torch, register the version with its lineage.
    4. Promote it to ``champion`` if it beats the current one, else alias it ``challenger``.
    5. Verify the audit log.

    Parameters
    ----------
    ws : Workspace
        Open stores of the project.
    rows : int, default 200000
        Synthetic transactions.
    epochs : int, default 3
        Training epochs.
    seed : int, default 0
        Seed for data and training.

    Returns
    -------
    dict
        Summary: run id, version, metrics, alias decision, audit state.
    """
    out = Console()
    progress_console = Console(stderr=True)
    started = time.perf_counter()
    out.rule("[bold]fedloop quickstart: card-fraud detection")
    data = make_fraudlike(rows, seed=seed)
    fraud_rate = float(data.y_train.mean())
    out.print(
        f"1. Generated {rows:,} transactions ({fraud_rate:.1%} fraud), "
        f"{data.num_features} features, 80/20 stratified split."
    )
    schema = {"features": data.num_features, "dtype": "float32", "label": "is_fraud"}
    train_ds = ws.metadata.register_dataset(
        ws.project.id,
        "fraudlike-train",
        fingerprint=fingerprint_arrays(data.x_train, data.y_train),
        num_rows=len(data.y_train),
        schema=schema,
    )
    test_ds = ws.metadata.register_dataset(
        ws.project.id,
        "fraudlike-test",
        fingerprint=fingerprint_arrays(data.x_test, data.y_test),
        num_rows=len(data.y_test),
        schema=schema,
    )
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    champion = ws.metadata.find_alias(MODEL_NAME, CHAMPION) if _model_exists(registry) else None

    adapter = TorchAdapter(
        lambda: mlp(data.num_features), num_features=data.num_features, seed=seed
    )
    if champion is not None:
        adapter.set_parameters(registry.load_weights(champion))
        out.print(f"   Warm start from {MODEL_NAME} v{champion.version} (the champion).")
    params = {**adapter.params, "epochs": epochs, "rows": rows, "architecture": "mlp-30-64-32-1"}
    steps_per_epoch = -(-len(data.y_train) // adapter.batch_size)
    with start_run(
        "quickstart",
        params=params,
        tags={"scenario": "fraud"},
        dataset_ids=[(train_ds.id, "train"), (test_ds.id, "eval")],
        store=ws.metadata,
        artifacts=ws.artifacts,
    ) as tracked:
        out.print(
            f"2. Training run [cyan]{tracked.id}[/] ({epochs} epochs, {steps_per_epoch} steps each):"
        )
        with Progress(
            TextColumn("   epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  test AUC {task.fields[auc]}"),
            TimeElapsedColumn(),
            console=progress_console,
            transient=True,
        ) as bar:
            task = bar.add_task(
                "train", total=steps_per_epoch * epochs, epoch=1, epochs=epochs, loss=0.0, auc="-"
            )
            history: list[dict[str, float]] = []
            for epoch in range(1, epochs + 1):
                bar.update(task, epoch=epoch)

                def on_step(step: int, loss: float) -> None:
                    tracked.log_metric("train_loss", loss, step=step)
                    bar.update(task, advance=1, loss=loss)

                adapter.fit(data.x_train, data.y_train, epochs=1, on_step=on_step)
                metrics = adapter.evaluate(data.x_test, data.y_test)
                tracked.log_metrics({f"test_{k}": v for k, v in metrics.items()}, step=epoch)
                history.append(metrics)
                bar.update(task, auc=f"{metrics['auc']:.4f}")
        graph = adapter.to_onnx()
        parity = _onnx_parity(graph, adapter, data.x_test[:2048])
        tracked.log_metric("onnx_max_abs_diff", parity, step=0)
        tracked.log_artifact("model.onnx", graph, media_type="application/onnx")

    final = history[-1]
    out.print(
        f"   Test AUC {final['auc']:.4f}, average precision {final['average_precision']:.4f}; "
        f"ONNX matches torch within {parity:.1e}."
    )
    mv = registry.register(
        MODEL_NAME,
        weights=adapter.get_parameters(),
        onnx_model=graph,
        signature=adapter.signature(),
        metrics={
            k: final[k] for k in ("auc", "average_precision", "log_loss", "recall", "precision")
        },
        tags={"scenario": "fraud", "trainer": "quickstart"},
        run_id=tracked.id,
        parent_version=champion.version if champion else None,
        datasets=[(train_ds.id, "train"), (test_ds.id, "eval")],
        actor="quickstart",
        description="MLP 30-64-32-1 on synthetic card transactions",
    )
    attach_reference(registry, mv, data.x_train, actor="quickstart")
    out.print(
        f"3. Registered [bold]{MODEL_NAME} v{mv.version}[/] (weights + ONNX + signature, "
        "lineage and the reference profile drift is measured against)."
    )
    champion_auc = champion.metrics.get("auc") if champion else None
    if champion_auc is None or final["auc"] >= champion_auc:
        registry.promote(
            MODEL_NAME,
            mv.version,
            alias=CHAMPION,
            actor="quickstart",
            reason=f"test AUC {final['auc']:.4f} >= champion {champion_auc}",
        )
        decision = f"promoted to {CHAMPION}"
    else:
        registry.promote(
            MODEL_NAME,
            mv.version,
            alias=CHALLENGER,
            actor="quickstart",
            reason=f"test AUC {final['auc']:.4f} < champion {champion_auc:.4f}",
        )
        decision = (
            f"kept as {CHALLENGER} (champion v{champion.version if champion else '?'} is better)"
        )
    out.print(f"4. {MODEL_NAME} v{mv.version} {decision}.")
    report = ws.metadata.verify_audit()
    out.print(
        f"5. Audit log {'intact' if report.ok else 'BROKEN'}: {report.checked} hash-chained events."
    )

    table = Table(title="Summary", title_justify="left", header_style="bold")
    table.add_column("item")
    table.add_column("value")
    for key, value in (
        ("run", tracked.id),
        ("model", f"{MODEL_NAME} v{mv.version}"),
        ("decision", decision),
        ("test AUC", f"{final['auc']:.4f}"),
        ("metric points logged", str(steps_per_epoch * epochs)),
        ("audit events", str(report.checked)),
        ("wall time", f"{time.perf_counter() - started:.1f} s"),
    ):
        table.add_row(key, value)
    out.print(table)
    out.print(
        "Next: [cyan]fedloop models show fraud-detector[/], "
        f"[cyan]fedloop models lineage {MODEL_NAME}:{mv.version}[/], [cyan]fedloop audit verify[/]"
    )
    return {
        "run_id": tracked.id,
        "version": mv.version,
        "auc": final["auc"],
        "decision": decision,
        "audit_ok": report.ok,
        "onnx_max_abs_diff": parity,
    }


def _model_exists(registry: ModelRegistry) -> bool:
    return any(m.name == MODEL_NAME for m in registry.list_models())


def _onnx_parity(graph: bytes, adapter: TorchAdapter, x: np.ndarray[Any, Any]) -> float:
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    served = session.run(None, {adapter.input_name: x.astype(np.float32)})[0].reshape(-1)
    return float(np.max(np.abs(served - adapter.predict_proba(x))))
