"""``fedloop ui``'s app: the dashboard alone over a store, read-only, behind the API's key checks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from fedloop.api.auth import Access
from fedloop.api.monitor import live
from fedloop.core import FedloopConfig
from fedloop.store import StoreAuthenticator, Workspace
from fedloop.ui import DASHBOARD_PREFIX, create_dashboard

__all__ = [
    "DASHBOARD_CONFIG_ENV",
    "DASHBOARD_HOST_ENV",
    "DASHBOARD_SERVING_URL_ENV",
    "create_dashboard_app",
    "dashboard_app_from_environ",
]

#: How ``fedloop ui`` hands its resolved config, bound interface and inference server URL to
#: :func:`dashboard_app_from_environ` (uvicorn loads the app by name; the shells do not import
#: each other).
DASHBOARD_CONFIG_ENV = "_FEDLOOP_DASHBOARD_CONFIG"
DASHBOARD_HOST_ENV = "_FEDLOOP_DASHBOARD_HOST"
DASHBOARD_SERVING_URL_ENV = "_FEDLOOP_DASHBOARD_SERVING_URL"


def create_dashboard_app(
    ws: Workspace, *, access: Access | None, serving_url: str | None = None
) -> Starlette:
    """Return an app serving only the dashboard (under ``/ui``; ``/`` redirects there).

    Read-only: without the loop's controller there is no manual trigger. ``/health/live`` is
    open. The workspace is closed when the app shuts down.

    Parameters
    ----------
    ws : Workspace
        The stores to show.
    access : Access or None
        API-key checks (the dashboard's login); None: open.
    serving_url : str or None
        An inference server whose ``/metrics`` the deployments page reads.

    Returns
    -------
    Starlette
        The app.
    """

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{DASHBOARD_PREFIX}/runs", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ws.close()

    return Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            Mount(
                DASHBOARD_PREFIX,
                app=create_dashboard(ws, access=access, serving_url=serving_url),
            ),
        ],
        lifespan=lifespan,
    )


def dashboard_app_from_environ() -> Starlette:
    """Build :func:`create_dashboard_app` from the ``DASHBOARD_*_ENV`` variables (uvicorn factory).

    Logins follow ``[api] auth`` for a server bound to ``DASHBOARD_HOST_ENV``.

    Returns
    -------
    Starlette
        The dashboard over the configured workspace.
    """
    from fedloop.store import open_workspace

    config = FedloopConfig.model_validate_json(os.environ[DASHBOARD_CONFIG_ENV])
    ws = open_workspace(config)
    host = os.environ.get(DASHBOARD_HOST_ENV) or config.monitoring.host
    access = Access(StoreAuthenticator(ws.metadata, "api"), config.api, host=host)
    return create_dashboard_app(
        ws, access=access, serving_url=os.environ.get(DASHBOARD_SERVING_URL_ENV) or None
    )
