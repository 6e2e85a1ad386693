"""Register a federated run's final model with its lineage: the clients and rounds that made it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from fedloop.core import DatasetId, Parameters, RunId, Signature, decode_parameters
from fedloop.federated.privacy import privacy_record
from fedloop.learn import DataProfile
from fedloop.registry import ModelRegistry
from fedloop.store import Contributor, ModelVersion, SqlMetadataStore, Workspace

__all__ = ["register_federated_model"]

#: Strategies whose checkpointed state holds a differential-privacy ledger.
_DP_STRATEGIES = frozenset({"dpfedavg"})


def _contributors(metadata: SqlMetadataStore, run_id: RunId) -> list[Contributor]:
    """Return every client with an accepted result: its rounds and its largest example count."""
    rounds: dict[str, list[int]] = defaultdict(list)
    examples: dict[str, int] = defaultdict(int)
    for round_num, row in metadata.list_fl_client_rounds(run_id):
        if row.status == "ok":
            rounds[row.client_id].append(round_num)
            examples[row.client_id] = max(examples[row.client_id], row.num_examples or 0)
    return [
        Contributor(contributor=c, kind="client", rounds=tuple(r), num_examples=examples[c])
        for c, r in sorted(rounds.items())
    ]


def _secure_aggregation(params: Mapping[str, str]) -> dict[str, Any] | None:
    """Return how updates were protected in transit to the coordinator, or None if they were not."""
    prefix = "federated.secure_aggregation."
    if str(params.get(prefix + "enabled", "")).lower() != "true":
        return None
    neighbours = params.get(prefix + "neighbours")
    plus = neighbours not in (None, "", "None")
    return {
        "protocol": "secagg+" if plus else "secagg",
        "neighbours": int(str(neighbours)) if plus else None,
        "threshold": float(params.get(prefix + "threshold", "nan")),
        "scale_bits": int(params.get(prefix + "scale_bits", "0")),
    }


def _privacy(ws: Workspace, run_id: RunId) -> dict[str, Any] | None:
    """Return the privacy record of a run: DP cost (from its last ledger) and secure aggregation."""
    params = ws.metadata.get_run(run_id).params
    secure = _secure_aggregation(params)
    record: dict[str, Any] | None = None
    last = ws.metadata.latest_fl_round(run_id)
    if params.get("strategy") in _DP_STRATEGIES and last is not None and last.state_digest:
        state = decode_parameters(ws.artifacts.get_bytes(last.state_digest))
        strategy_params = {
            k.removeprefix("strategy."): v for k, v in params.items() if k.startswith("strategy.")
        }
        record = privacy_record(strategy_params, state)
    if secure is None:
        return record
    return {**(record or {}), "secure_aggregation": secure}


def register_federated_model(
    ws: Workspace,
    name: str,
    *,
    run_id: RunId,
    weights: Parameters,
    onnx_model: bytes,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    datasets: Sequence[tuple[DatasetId, str]] = (),
    description: str = "",
    profile: DataProfile | None = None,
    parent_version: int | None = None,
    actor: str = "coordinator",
) -> ModelVersion:
    """Register the final model of a federated run; the model's first version becomes champion.

    Every client that had a result accepted in some round is recorded as a contributor, with
    those rounds and the most examples it trained on in one round (from the run's client-round
    rows, so a client that dropped out still gets credit for the rounds it did contribute to).
    A run trained with differential privacy (strategy ``dpfedavg``) records its cost as the
    version's ``privacy`` (``mechanism``, ``epsilon`` at ``delta``, ``noise_multiplier``,
    ``clip_norm``, ``rounds``, ``accountant``…), read from the ledger checkpointed with the
    run's last round, so lineage shows it. A run with secure aggregation adds
    ``privacy["secure_aggregation"]`` (protocol secagg or secagg+, threshold, neighbours).

    Parameters
    ----------
    ws : Workspace
        The project's stores; the run must be recorded there.
    name : str
        Registered model name (created on first use).
    run_id : RunId
        The federated run.
    weights : Parameters
        The final global weights.
    onnx_model : bytes
        Their ONNX graph for serving.
    signature : Signature or None
        Declared inputs and outputs; read off the graph when None.
    metrics : Mapping or None
        Default: the ``eval_*`` metrics of the run's last round, without the prefix.
    tags : Mapping or None
        Labels of the version.
    datasets : sequence of (DatasetId, role)
        Data sets used (e.g. the central evaluation set).
    description : str
        Free text.
    profile : DataProfile or None
        The reference profile merged from the clients' summaries
        (:func:`fedloop.federated.profiling.collect_profile`), attached as ``federated``.
    parent_version : int or None
        The version this one was warm-started from (lineage).
    actor : str, default "coordinator"
        Who registers and promotes (audit).

    Returns
    -------
    ModelVersion
        The new version, with its contributors and, when it became champion, that alias.

    Raises
    ------
    InvalidInput, SignatureMismatch
        When the name, weights, graph or signature are bad (nothing is written).
    NotFound
        When the run or a data set does not exist.

    Example
    -------
    >>> adapter.set_parameters(final)  # doctest: +SKIP
    >>> mv = register_federated_model(ws, "fraud-fl", run_id=run_id, weights=final,
    ...                               onnx_model=adapter.to_onnx(), signature=adapter.signature())
    >>> [c.contributor for c in mv.contributors]
    ['bank-000', 'bank-001']
    """
    if metrics is None:
        last = ws.metadata.latest_fl_round(run_id)
        found = last.metrics if last is not None else {}
        metrics = {k.removeprefix("eval_"): v for k, v in found.items() if k.startswith("eval_")}
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    mv = registry.register(
        name,
        weights=weights,
        onnx_model=onnx_model,
        signature=signature,
        metrics=metrics,
        tags=tags,
        run_id=run_id,
        datasets=datasets,
        contributors=_contributors(ws.metadata, run_id),
        privacy=_privacy(ws, run_id),
        parent_version=parent_version,
        description=description,
        actor=actor,
    )
    if profile is not None:
        registry.attach_profile(mv, profile, source="federated", actor=actor)
    return registry.champion_if_first(mv, actor=actor, reason="first federated model")
