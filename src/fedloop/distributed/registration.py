"""Register a data-parallel run's final model with its lineage: the workers and restarts behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedloop.core import DatasetId, Signature
from fedloop.distributed.training import DataParallelResult
from fedloop.registry import ModelRegistry
from fedloop.store import Contributor, ModelVersion, Workspace

__all__ = ["register_data_parallel_model", "worker_contributors"]


def worker_contributors(*, workers: int, epochs: int, rows_per_worker: int) -> list[Contributor]:
    """Return one ``worker`` contributor per rank: the epochs it trained and its shard's rows.

    Parameters
    ----------
    workers : int
        Ranks.
    epochs : int
        Epochs of the run (each rank saw its shard once per epoch).
    rows_per_worker : int
        Rows of one rank's shard of an epoch.

    Returns
    -------
    list of Contributor
        ``rank-0``, ``rank-1``, … of kind ``worker``; ``rounds`` are the epochs 1..E.
    """
    return [
        Contributor(
            contributor=f"rank-{rank}",
            kind="worker",
            rounds=tuple(range(1, epochs + 1)),
            num_examples=rows_per_worker,
        )
        for rank in range(workers)
    ]


def register_data_parallel_model(
    ws: Workspace,
    name: str,
    *,
    result: DataParallelResult,
    onnx_model: bytes,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    datasets: Sequence[tuple[DatasetId, str]] | None = None,
    description: str = "",
    parent_version: int | None = None,
    actor: str = "trainer",
) -> ModelVersion:
    """Register the final model of a data-parallel run; the model's first version becomes champion.

    Lineage records the run (kind ``data-parallel``, its params: workers, epochs, batch size,
    checkpoint interval…), one ``worker`` contributor per rank, the training data set, and
    tags ``workers``, ``restarts`` and ``steps_lost`` on the version — as a federated run
    records its clients and rounds.

    Parameters
    ----------
    ws : Workspace
        The project's stores; the run must be recorded there.
    name : str
        Registered model name (created on first use).
    result : DataParallelResult
        What :func:`train_data_parallel` returned (weights, workers, restarts).
    onnx_model : bytes
        The final model's ONNX graph for serving.
    signature : Signature or None
        Declared inputs and outputs; read off the graph when None.
    metrics : Mapping or None
        Held-out metrics (``auc``…).
    tags : Mapping or None
        Extra labels of the version.
    datasets : sequence of (DatasetId, role) or None
        Data sets; default the run's own (its training set).
    description : str
        Free text.
    parent_version : int or None
        The version this one was warm-started from.
    actor : str, default "trainer"
        Who registers and promotes (audit).

    Returns
    -------
    ModelVersion
        The new version, with its contributors (and the champion alias when it is the first).

    Raises
    ------
    InvalidInput, SignatureMismatch
        When the name, weights, graph or signature are bad (nothing is written).
    NotFound
        When the run does not exist.

    Example
    -------
    >>> mv = register_data_parallel_model(  # doctest: +SKIP
    ...     ws, "fraud-ddp", result=result, onnx_model=adapter.to_onnx(), metrics={"auc": auc})
    >>> [c.contributor for c in mv.contributors]
    ['rank-0', 'rank-1']
    """
    run = ws.metadata.get_run(result.run_id)
    epochs = int(run.params.get("epochs", 1))
    if datasets is None:
        datasets = [(d.id, role) for d, role in ws.metadata.list_run_datasets(result.run_id)]
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    mv = registry.register(
        name,
        weights=result.weights,
        onnx_model=onnx_model,
        signature=signature,
        metrics=metrics,
        tags={
            "training": "data-parallel",
            "workers": str(result.workers),
            "restarts": str(result.restarts),
            "steps_lost": str(result.steps_lost),
            **dict(tags or {}),
        },
        run_id=result.run_id,
        datasets=datasets,
        contributors=worker_contributors(
            workers=result.workers, epochs=epochs, rows_per_worker=result.rows_per_worker
        ),
        parent_version=parent_version,
        description=description,
        actor=actor,
    )
    return registry.champion_if_first(mv, actor=actor, reason="first data-parallel model")
