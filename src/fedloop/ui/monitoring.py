"""Dashboard pages of the monitor: per-model drift per feature over time and live performance."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedloop.core import InvalidInput
from fedloop.store import MonitorWindow
from fedloop.ui.charts import drift_figure, effect_heatmap, effect_lines, performance_figure
from fedloop.ui.pages import Dashboard, page_endpoint, render
from fedloop.ui.sessions import Viewer

__all__ = ["monitoring_routes", "window_overview"]

_MAX_WINDOWS = 500


def window_overview(windows: list[MonitorWindow]) -> dict[str, Any]:
    """Summarise a model's checked windows for the monitoring list.

    Parameters
    ----------
    windows : list of MonitorWindow
        Oldest first.

    Returns
    -------
    dict
        ``drift`` and ``performance`` counts, ``drifting`` (drift verdicts), the latest drift
        window's ``verdict`` and ``drifted_columns``, the latest ``auc`` and ``last`` (time).
    """
    drift = [w for w in windows if w.kind == "drift"]
    perf = [w for w in windows if w.kind == "performance"]
    latest = drift[-1] if drift else None
    return {
        "drift": len(drift),
        "performance": len(perf),
        "drifting": sum(w.verdict == "drift" for w in drift),
        "verdict": latest.verdict if latest else None,
        "drifted_columns": list(latest.summary.get("drifted_columns", [])) if latest else [],
        "auc": perf[-1].summary.get("auc") if perf else None,
        "last": windows[-1].end_time if windows else None,
    }


def monitoring_routes(dash: Dashboard) -> list[Route]:
    """Return ``/monitoring`` (every model's windows) and ``/monitoring/{name}`` (charts)."""
    metadata = dash.ws.metadata

    def monitoring_page(request: Request, viewer: Viewer) -> Response:
        models = metadata.list_registered_models(dash.ws.project.id)
        rows = [
            (m, window_overview(metadata.list_monitor_windows(m.name, limit=_MAX_WINDOWS)))
            for m in models
        ]
        return render(dash, request, viewer, "monitoring.html", rows=rows)

    def model_page(request: Request, viewer: Viewer) -> Response:
        name = request.path_params["name"]
        known = metadata.list_model_versions(name)  # NotFound for an unknown model
        raw = request.query_params.get("version", "")
        if raw and not raw.isdigit():
            raise InvalidInput(f"`version` must be a number; got {raw!r}.", field="version")
        version = int(raw) if raw else None
        windows = metadata.list_monitor_windows(name, version=version, limit=_MAX_WINDOWS)
        drift = [w for w in windows if w.kind == "drift"]
        perf = [w for w in windows if w.kind == "performance"]
        charts = {}
        if drift:
            charts["drift"] = drift_figure(drift)
            charts["effects"] = effect_lines(drift)
            charts["heatmap"] = effect_heatmap(drift)
        if perf:
            charts["performance"] = performance_figure(perf)
        latest = drift[-1] if drift else None
        findings = sorted(
            latest.summary.get("columns", []) if latest else [],
            key=lambda c: (not c.get("drifted"), -(c.get("effect") or 0.0), c.get("column", "")),
        )
        return render(
            dash, request, viewer, "monitor_model.html", name=name, version=version,
            charts=charts, latest=latest, findings=findings, overview=window_overview(windows),
            versions=[v.version for v in known], latest_perf=perf[-1] if perf else None,
        )  # fmt: skip

    return [
        Route("/monitoring", page_endpoint(dash, "viewer", monitoring_page), name="monitoring"),
        Route(
            "/monitoring/{name}", page_endpoint(dash, "viewer", model_page), name="monitor_model"
        ),
    ]
