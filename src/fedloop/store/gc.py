"""Garbage collection of the artifact store against the digests the metadata refers to."""

from __future__ import annotations

from dataclasses import asdict

from fedloop.store.artifacts import GcReport
from fedloop.store.workspace import Workspace

__all__ = ["GC_EVENT", "collect_garbage"]

#: Audit event kind appended when a collection deleted something.
GC_EVENT = "store.gc"


def collect_garbage(
    ws: Workspace, *, min_age_s: float = 3600, dry_run: bool = False, actor: str = "system"
) -> GcReport:
    """Delete artifacts no record refers to, and partial writes a crash left under ``tmp/``.

    The keep-set is every digest column of the metadata store
    (:meth:`SqlMetadataStore.list_artifact_digests`). Objects and ``tmp/`` files younger
    than ``min_age_s`` are kept, because a registration stores its artifacts before it
    commits the row that refers to them. When something was deleted, a ``store.gc`` audit
    event records the counts and the deleted digests.

    Known limit: a write that re-uses an old unreferenced object (equal content is stored
    once, so the old object is not rewritten) and commits its row while a collection runs
    can lose that object. Run collections when nothing registers, or keep ``min_age_s``
    well above the time between an upload and its commit and re-run registrations that fail
    with ``ArtifactMissing``.

    Parameters
    ----------
    ws : Workspace
        The open stores.
    min_age_s : float, default 3600
        Seconds since last modification below which nothing is deleted (>= 0).
    dry_run : bool, default False
        Report what would be deleted; delete nothing and append no event.
    actor : str, default "system"
        Recorded in the audit event.

    Returns
    -------
    GcReport
        Counts, bytes freed and the (capped) list of deleted digests.

    Raises
    ------
    InvalidInput
        When ``min_age_s`` is negative or not a finite number.
    StoreUnavailable
        When either store cannot be reached.

    Examples
    --------
    >>> report = collect_garbage(ws, min_age_s=3600, dry_run=True)  # doctest: +SKIP
    >>> report.blobs_deleted, report.bytes_freed  # doctest: +SKIP
    (2, 40960)
    """
    keep = ws.metadata.list_artifact_digests()
    report = ws.artifacts.sweep(
        keep, min_age_s=min_age_s, dry_run=dry_run, now=ws.metadata.clock.now()
    )
    if not dry_run and (report.blobs_deleted or report.tmp_deleted):
        payload = asdict(report)
        payload["digests"] = list(report.digests)
        payload["min_age_s"] = float(min_age_s)
        ws.metadata.append_event(GC_EVENT, "store:artifacts", payload, actor=actor)
    return report
