"""The dashboard's ASGI app: every page, its static files and plotly.js from the plotly package."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from fedloop.core import MissingExtraError
from fedloop.store import Workspace
from fedloop.ui.audit import audit_routes
from fedloop.ui.deployments import deployment_routes
from fedloop.ui.login import login_routes
from fedloop.ui.models import model_routes
from fedloop.ui.monitoring import monitoring_routes
from fedloop.ui.pages import Dashboard
from fedloop.ui.runs import run_routes
from fedloop.ui.sessions import KeyAccess, Sessions

if TYPE_CHECKING:
    from fedloop.automation import Controller, ServingStats

__all__ = ["DASHBOARD_PREFIX", "create_dashboard", "plotly_js_file"]

#: Where the control plane mounts the dashboard.
DASHBOARD_PREFIX = "/ui"
_STATIC = Path(__file__).with_name("static")


def plotly_js_file() -> tuple[Path, str]:
    """Return the path of the plotly.js bundle inside the installed ``plotly`` package, and its version.

    Raises
    ------
    MissingExtraError
        When the ``plotly`` package (a dependency of fedloop) is missing or has no bundle.
    """
    spec = importlib.util.find_spec("plotly")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in locations:
        bundle = Path(base) / "package_data" / "plotly.min.js"
        if bundle.is_file():
            return bundle, importlib.metadata.version("plotly")
    raise MissingExtraError(
        "the dashboard's charts need plotly.js from the `plotly` package, which is missing.",
        field="plotly",
        hint='pip install "plotly>=5.20" (a dependency of fedloop; reinstall fedloop).',
    )


def create_dashboard(
    ws: Workspace,
    *,
    access: KeyAccess | None = None,
    serving_url: str | None = None,
    controller: Controller | None = None,
    prefix: str = DASHBOARD_PREFIX,
    poll_ms: int = 2_000,
    session_ttl_s: float = 8 * 3600.0,
    stats_reader: Callable[[str], ServingStats] | None = None,
) -> Starlette:
    """Return the dashboard as an app to mount at ``prefix``: server-rendered pages, no build.

    Pages (``viewer`` role when API keys are required; an open dashboard otherwise): ``/runs``
    and ``/runs/{id}`` (live round charts: the page polls ``/api/runs/{id}/rounds`` every
    ``poll_ms`` while the run is running), ``/models``, ``/models/{name}``,
    ``/models/{name}/{version}`` (lineage graph, alias history, privacy cost),
    ``/deployments`` (traffic split, latency and error rate from the inference server),
    ``/loop`` (policies and actions; a manual trigger needs ``operator`` and a CSRF token),
    ``/monitoring`` and ``/monitoring/{name}`` (drift per feature over time), ``/audit``
    (events and the chain's verification); ``/login`` and ``/logout``; ``/static/...``.

    Parameters
    ----------
    ws : Workspace
        The project's stores (read; the manual trigger writes through ``controller``).
    access : KeyAccess or None
        The control plane's API-key checks (``fedloop.api.auth.Access``); None: open.
    serving_url : str or None
        The inference server whose ``/metrics`` the deployments page reads.
    controller : Controller or None
        The loop's controller, for the policies and manual triggers; None: read-only.
    prefix : str, default "/ui"
        Where the app is mounted (links and cookies are scoped to it).
    poll_ms : int, default 2000
        How often a live run page polls.
    session_ttl_s : float, default 28800
        Lifetime of a login.
    stats_reader : callable or None
        ``stats_reader(url) -> ServingStats``; default: scrape ``{url}/metrics``.

    Returns
    -------
    Starlette
        The app (no lifespan of its own).

    Raises
    ------
    MissingExtraError
        When plotly.js cannot be found.

    Example
    -------
    >>> app = Starlette(routes=[Mount("/ui", app=create_dashboard(ws))])  # doctest: +SKIP
    """
    from fedloop.automation import read_serving_stats

    bundle, version = plotly_js_file()
    plotly_route = f"/static/plotly-{version}.min.js"
    dash = Dashboard.create(
        ws=ws,
        sessions=Sessions(access, ws.metadata, ttl_s=session_ttl_s),
        prefix=prefix.rstrip("/"),
        serving_url=serving_url,
        controller=controller,
        poll_ms=poll_ms,
        stats_reader=stats_reader or read_serving_stats,
        plotly_path=f"{prefix.rstrip('/')}{plotly_route}",
    )

    async def home(request: Request) -> Response:
        return RedirectResponse(dash.url("/runs"), status_code=303)

    async def plotly_js(request: Request) -> Response:
        # The URL names the version, so the bundle (4.8 MB) is cached for good.
        return FileResponse(
            bundle,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    routes: list[BaseRoute] = [
        Route("/", home, name="home"),
        Route(plotly_route, plotly_js),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
        *login_routes(dash),
        *run_routes(dash),
        *model_routes(dash),
        *deployment_routes(dash),
        *monitoring_routes(dash),
        *audit_routes(dash),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = dash
    return app
