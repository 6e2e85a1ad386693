"""Dashboard pages of serving and the loop: traffic splits, latency, error rates, loop actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fedloop.core import FedloopError, InvalidInput, StoreUnavailable
from fedloop.registry import CHALLENGER, CHAMPION
from fedloop.store import Deployment
from fedloop.ui.audit import newest_events
from fedloop.ui.charts import Figure, traffic_figure
from fedloop.ui.pages import Dashboard, form_endpoint, page_endpoint, render
from fedloop.ui.sessions import Viewer

__all__ = ["DeploymentView", "deployment_routes", "serving_rows"]

_MAX_REASON_CHARS = 1_000
#: How many of the newest ``automation.*`` events give the actions' reasons.
_REASON_EVENTS = 1_000


@dataclass(frozen=True)
class DeploymentView:
    """One deployment as the page shows it: its desired split and its current aliases."""

    record: Deployment
    canary: Mapping[str, Any] | None
    shadow: str | None
    reason: str
    champion: int | None
    challenger: int | None
    chart: Figure | None


def serving_rows(dash: Dashboard) -> tuple[list[dict[str, Any]], str | None]:
    """Read the inference server's per-version traffic: requests, error rate, p50 and p99.

    Parameters
    ----------
    dash : Dashboard
        Knows the server's URL (or not).

    Returns
    -------
    (list of dict, str or None)
        Rows sorted by model and version, and why there are none when they are not
        available (no server known, or it cannot be reached).
    """
    if dash.serving_url is None:
        return [], (
            "not available: this control plane knows no inference server "
            "(fedloop up starts one; fedloop ui takes --serving-url)."
        )
    try:
        stats = dash.stats_reader(dash.serving_url)
    except StoreUnavailable as err:
        return [], f"not available: {err.message}"
    rows = []
    for (model, version), t in sorted(stats.versions.items()):
        rows.append(
            {
                "model": model,
                "version": version,
                "requests": int(t.requests),
                "errors": int(t.errors),
                "error_rate": t.error_rate,
                "p50_ms": t.quantile_ms(0.5),
                "p99_ms": t.quantile_ms(0.99),
            }
        )
    return rows, None if rows else "no request has been served yet."


def _reasons(dash: Dashboard) -> dict[str, str]:
    """Return the latest reason of each loop action, from its newest ``automation.*`` events."""
    found: dict[str, str] = {}
    metadata = dash.ws.metadata
    events, _ = newest_events(
        metadata,
        before=metadata.latest_event_seq() + 1,
        kind="automation.*",
        limit=_REASON_EVENTS,
    )
    for e in events:
        action = e.payload.get("action_id")
        if isinstance(action, str) and action not in found and e.payload.get("reason"):
            found[action] = str(e.payload["reason"])
    return found


def deployment_routes(dash: Dashboard) -> list[Route]:
    """Return ``/deployments``, ``/loop`` and the manual trigger (operator, CSRF token)."""
    metadata = dash.ws.metadata

    def _alias(model: str, alias: str) -> int | None:
        found = metadata.find_alias(model, alias)
        return found.version if found else None

    def deployments_page(request: Request, viewer: Viewer) -> Response:
        views = []
        for d in metadata.list_deployments():
            history = metadata.list_events(
                kind="deployment.changed", subject=f"deployment:{d.name}", limit=1_000
            )
            views.append(
                DeploymentView(
                    record=d,
                    canary=d.spec.get("canary"),
                    shadow=d.spec.get("shadow"),
                    reason=str(d.spec.get("reason", "")),
                    champion=_alias(d.model_name, CHAMPION),
                    challenger=_alias(d.model_name, CHALLENGER),
                    chart=traffic_figure(history, now=metadata.clock.now()),
                )
            )
        rows, unavailable = serving_rows(dash)
        return render(
            dash, request, viewer, "deployments.html", deployments=views, serving=rows,
            unavailable=unavailable, serving_url=dash.serving_url,
        )  # fmt: skip

    def loop_page(
        request: Request, viewer: Viewer, *, error: FedloopError | None = None, status: int = 200
    ) -> Response:
        controller = dash.controller
        policies = list(controller.policies.values()) if controller is not None else []
        actions = list(reversed(metadata.list_loop_actions(limit=100)))
        return render(
            dash, request, viewer, "loop.html", status_code=status, policies=policies,
            actions=actions, reasons=_reasons(dash), read_only=controller is None, error=error,
            triggered=request.query_params.get("triggered"),
        )  # fmt: skip

    def trigger(request: Request, viewer: Viewer, form: Mapping[str, str]) -> Response:
        name = request.path_params["name"]
        reason = form.get("reason", "").strip() or "manual trigger from the dashboard"
        try:
            if dash.controller is None:
                raise InvalidInput(
                    "this dashboard is read-only: it runs without the loop's controller.",
                    field="policy",
                    value=name,
                    hint="Trigger from the control plane's dashboard (fedloop up) or with "
                    "`fedloop loop trigger`.",
                )
            if len(reason) > _MAX_REASON_CHARS:
                raise InvalidInput(
                    f"the reason is longer than {_MAX_REASON_CHARS} characters.", field="reason"
                )
            action = dash.controller.trigger_manually(name, reason=reason, actor=viewer.actor)
        except FedloopError as err:
            return loop_page(request, viewer, error=err, status=err.http_status)
        return RedirectResponse(dash.url("/loop", triggered=action.id), status_code=303)

    return [
        Route("/deployments", page_endpoint(dash, "viewer", deployments_page), name="deployments"),
        Route("/loop", page_endpoint(dash, "viewer", loop_page), name="loop"),
        Route(
            "/loop/policies/{name}/trigger",
            form_endpoint(dash, "operator", trigger),
            methods=["POST"],
        ),
    ]
