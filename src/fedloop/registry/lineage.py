"""Lineage of a model version: its run, data sets, contributors, ancestors and alias history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedloop.store import AliasChange, AuditEvent, Dataset, ModelVersion, Run, SqlMetadataStore

__all__ = ["Lineage", "lineage"]

_MAX_ANCESTORS = 1_000


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from.

    Attributes
    ----------
    version : ModelVersion
        The version described.
    run : Run or None
        The run that produced it.
    datasets : list of (Dataset, role)
        Data sets it was trained or evaluated on.
    ancestors : list of ModelVersion
        Parent, grandparent, … (warm starts), nearest first.
    alias_history : list of AliasChange
        Every alias move to or from this version.
    events : list of AuditEvent
        Audit events about this version.
    """

    version: ModelVersion
    run: Run | None
    datasets: list[tuple[Dataset, str]]
    ancestors: list[ModelVersion]
    alias_history: list[AliasChange]
    events: list[AuditEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready nested mapping (what ``fedloop models lineage --format json`` prints).

        Returns
        -------
        dict
            Version, run, data sets, contributors, privacy, ancestors and alias moves.
        """
        v = self.version
        return {
            "model": v.model_name,
            "version": v.version,
            "version_id": v.id,
            "created_at": v.created_at.isoformat(),
            "aliases": list(v.aliases),
            "weights_sha256": v.weights_digest,
            "onnx_sha256": v.onnx_digest,
            "metrics": v.metrics,
            "privacy": v.privacy,
            "run": None
            if self.run is None
            else {
                "id": self.run.id,
                "name": self.run.name,
                "kind": self.run.kind,
                "status": self.run.status,
                "params": self.run.params,
            },
            "datasets": [
                {
                    "id": d.id,
                    "name": d.name,
                    "fingerprint": d.fingerprint,
                    "rows": d.num_rows,
                    "role": r,
                }
                for d, r in self.datasets
            ],
            "contributors": [
                {
                    "id": c.contributor,
                    "kind": c.kind,
                    "rounds": list(c.rounds),
                    "num_examples": c.num_examples,
                }
                for c in v.contributors
            ],
            "ancestors": [{"version": a.version, "version_id": a.id} for a in self.ancestors],
            "alias_history": [
                {
                    "alias": h.alias,
                    "from": h.from_version,
                    "to": h.to_version,
                    "action": h.action,
                    "actor": h.actor,
                    "reason": h.reason,
                    "at": h.at.isoformat(),
                }
                for h in self.alias_history
            ],
            "events": [
                {"seq": e.seq, "kind": e.kind, "at": e.at.isoformat(), "actor": e.actor}
                for e in self.events
            ],
        }


def lineage(store: SqlMetadataStore, name: str, version: int) -> Lineage:
    """Collect the lineage of one version.

    Parameters
    ----------
    store : SqlMetadataStore
        The metadata store.
    name : str
        Model name.
    version : int
        Version number.

    Returns
    -------
    Lineage
        Run, data sets, contributors, ancestors and alias history.

    Raises
    ------
    NotFound
        When the model or version does not exist.
    """
    mv = store.get_model_version(name, version)
    run = store.find_run(mv.run_id) if mv.run_id else None
    by_id: dict[str, tuple[Dataset, str]] = {}
    if run is not None:
        for ds, role in store.list_run_datasets(run.id):
            by_id[ds.id] = (ds, role)
    for ds_id in mv.dataset_ids:
        if ds_id not in by_id:
            by_id[ds_id] = (store.get_dataset(ds_id), "train")
    ancestors: list[ModelVersion] = []
    parent = mv.parent_version_id
    seen = {mv.id}
    while parent is not None and parent not in seen and len(ancestors) < _MAX_ANCESTORS:
        seen.add(parent)
        ancestor = store.get_model_version_by_id(parent)
        ancestors.append(ancestor)
        parent = ancestor.parent_version_id
    moves = [h for h in store.alias_history(name) if version in (h.from_version, h.to_version)]
    events = store.list_events(subject=f"model:{name}/{version}", limit=1_000)
    return Lineage(
        version=mv,
        run=run,
        datasets=list(by_id.values()),
        ancestors=ancestors,
        alias_history=moves,
        events=events,
    )
