"""Dashboard pages of runs: the list, a run with its live round charts and per-client table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedloop.core import InvalidInput, RunId
from fedloop.store import FlClientRound, ModelVersion, Run, SqlMetadataStore
from fedloop.ui.charts import Figure, metric_figure, round_figures
from fedloop.ui.pages import Dashboard, data_endpoint, page_endpoint, render
from fedloop.ui.sessions import Viewer

__all__ = ["client_table", "rounds_data", "run_routes"]

#: Metrics shown in the runs table when a run has them (in this order), else its first ones.
_HEADLINE = ("eval_auc", "auc", "train_loss", "loss", "accuracy")
_MAX_METRIC_CHARTS = 12


def _headline(run: Run) -> list[tuple[str, float]]:
    shown = [(k, run.latest_metrics[k]) for k in _HEADLINE if k in run.latest_metrics]
    if not shown:
        shown = sorted(run.latest_metrics.items())[:2]
    return shown[:2]


def client_table(rows: Sequence[tuple[int, FlClientRound]]) -> list[dict[str, Any]]:
    """Summarise a run's client-round rows per client (never data or updates).

    Parameters
    ----------
    rows : sequence of (int, FlClientRound)
        From ``SqlMetadataStore.list_fl_client_rounds``, by round then client.

    Returns
    -------
    list of dict
        Per client: ``client``, ``ok``, ``dropped`` (failed, timed out or rejected),
        ``last_round``, ``last_status``, ``reason``, ``examples``, ``loss`` (its last
        reported training loss), ``bytes_up``, ``bytes_down``, ``seconds``.
    """
    table: dict[str, dict[str, Any]] = {}
    for round_num, c in rows:
        row = table.setdefault(
            c.client_id,
            {"client": c.client_id, "ok": 0, "dropped": 0, "examples": None, "loss": None,
             "bytes_up": 0, "bytes_down": 0, "seconds": 0.0},
        )  # fmt: skip
        if c.status == "ok":
            row["ok"] += 1
            if "loss" in c.metrics:
                row["loss"] = c.metrics["loss"]
        elif c.status in ("failed", "timeout", "rejected"):
            row["dropped"] += 1
        if c.num_examples is not None:
            row["examples"] = max(row["examples"] or 0, c.num_examples)
        row.update(last_round=round_num, last_status=c.status, reason=c.reason or "")
        row["bytes_up"] += c.bytes_up
        row["bytes_down"] += c.bytes_down
        row["seconds"] += c.seconds
    return sorted(table.values(), key=lambda r: r["client"])


def _versions_of(metadata: SqlMetadataStore, run: Run) -> list[ModelVersion]:
    found = []
    for model in metadata.list_registered_models(run.project_id):
        found += [v for v in metadata.list_model_versions(model.name) if v.run_id == run.id]
    return found


def rounds_data(metadata: SqlMetadataStore, run_id: RunId) -> dict[str, Any]:
    """Return what the run page's live section shows: status, round charts and client table.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The store.
    run_id : RunId
        The run.

    Returns
    -------
    dict
        ``status``, ``rounds`` (completed, round 0 excluded), ``planned`` (or None),
        ``figures`` (see :func:`fedloop.ui.charts.round_figures`) and ``clients``.

    Raises
    ------
    NotFound
        When the run does not exist.
    """
    run = metadata.get_run(run_id)
    rounds = metadata.list_fl_rounds(run_id)
    planned = run.params.get("federated.num_rounds")
    return {
        "run_id": run.id,
        "status": run.status,
        "rounds": len([r for r in rounds if r.round > 0]),
        "planned": int(planned) if planned and planned.isdigit() else None,
        "figures": round_figures(rounds),
        "clients": client_table(metadata.list_fl_client_rounds(run_id)),
    }


def run_routes(dash: Dashboard) -> list[Route]:
    """Return the runs pages: ``/runs``, ``/runs/{id}`` and ``/api/runs/{id}/rounds`` (JSON)."""
    metadata = dash.ws.metadata

    def runs_page(request: Request, viewer: Viewer) -> Response:
        query = request.query_params.get("q", "").strip()
        kind = request.query_params.get("kind", "")
        error = None
        found: list[Run] = []
        try:
            clauses = [c for c in (query, f"kind = '{kind}'" if kind.isidentifier() else "") if c]
            found = metadata.search_runs(
                dash.ws.project.id, filter=" and ".join(clauses), max_results=200
            )
        except InvalidInput as err:
            error = err
        rows = [(r, _headline(r)) for r in found]
        return render(
            dash, request, viewer, "runs.html", rows=rows, query=query, kind=kind, error=error,
            project=dash.ws.project.name,
        )  # fmt: skip

    def run_page(request: Request, viewer: Viewer) -> Response:
        run_id = RunId(request.path_params["run_id"])
        run = metadata.get_run(run_id)
        live = rounds_data(metadata, run_id)
        federated = run.kind == "federated" or live["rounds"] > 0
        charts: dict[str, Figure] = {}
        if not federated:
            for key in metadata.list_metric_keys(run_id)[:_MAX_METRIC_CHARTS]:
                charts[key] = metric_figure(key, metadata.get_metric_history(run_id, key))
        return render(
            dash, request, viewer, "run.html", run=run, live=live, federated=federated,
            charts=charts, versions=_versions_of(metadata, run),
            datasets=metadata.list_run_datasets(run_id), poll_ms=dash.poll_ms,
            live_url=dash.url(f"/api/runs/{run.id}/rounds"),
        )  # fmt: skip

    def rounds_json(request: Request, viewer: Viewer) -> Mapping[str, Any]:
        return rounds_data(metadata, RunId(request.path_params["run_id"]))

    return [
        Route("/runs", page_endpoint(dash, "viewer", runs_page), name="runs"),
        Route("/runs/{run_id}", page_endpoint(dash, "viewer", run_page), name="run"),
        Route("/api/runs/{run_id}/rounds", data_endpoint(dash, "viewer", rounds_json)),
    ]
