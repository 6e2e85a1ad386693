"""The control plane's app: monitor ingest, the closed loop's actions, the controller, the dashboard."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from fedloop.api.auth import SERVING_KEY_ENV, Access, actor, guarded
from fedloop.api.credentials import credential_routes
from fedloop.api.monitor import (
    PROMETHEUS,
    error_response,
    int_param,
    live,
    monitor_routes,
)
from fedloop.automation import Controller
from fedloop.core import FedloopConfig, FedloopError, InvalidInput
from fedloop.monitoring import Monitor, WebhookSink
from fedloop.store import StoreAuthenticator
from fedloop.ui import DASHBOARD_PREFIX, create_dashboard

__all__ = [
    "CONTROL_CONFIG_ENV",
    "SERVING_KEY_ENV",
    "SERVING_URL_ENV",
    "control_app_from_environ",
    "create_control_app",
]

_log = logging.getLogger("fedloop.api.control")

#: How ``fedloop up`` hands its resolved config and the inference server's URL to
#: :func:`control_app_from_environ` (uvicorn loads the app by name; the shells do not import
#: each other).
CONTROL_CONFIG_ENV = "_FEDLOOP_CONTROL_CONFIG"
SERVING_URL_ENV = "_FEDLOOP_CONTROL_SERVING_URL"


def create_control_app(
    monitor: Monitor,
    controller: Controller,
    *,
    max_body_bytes: int = 64 * 1024 * 1024,
    run_controller: bool = True,
    access: Access | None = None,
    dashboard: bool = True,
) -> Starlette:
    """Return the control plane: the monitor's routes, the loop's actions, the controller, the dashboard.

    Routes, with the least role each needs when API keys are required:
    :func:`fedloop.api.monitor.monitor_routes` (ingest: ``client``; windows: ``viewer``),
    ``GET /v1/loop/actions`` (``?model=&policy=&open=1&limit=``; ``viewer``),
    ``POST /v1/loop/policies/{name}/trigger`` (a manual trigger; body ``{"reason": "..."}``
    optional; ``operator``), :func:`fedloop.api.credentials.credential_routes` (``admin``),
    ``GET /metrics`` (the monitor's gauges; ``viewer``), ``GET /health/live`` (open), and
    the dashboard under ``/ui/`` (:func:`fedloop.ui.create_dashboard`: pages need a login
    with a ``viewer`` key when keys are required; ``GET /`` redirects there). On startup the controller runs in a thread, ticking every ``automation.tick_s``; on
    shutdown it stops and the monitor flushes its open windows.

    Parameters
    ----------
    monitor : Monitor
        Receives the payload logs.
    controller : Controller
        Reconciles the policies.
    max_body_bytes : int, default 64 MiB
        Largest ingest body taken.
    run_controller : bool, default True
        Start the controller's thread (False: only serve the routes).
    access : Access or None
        Who may call which route (None: anyone, for an app embedded in a process such as
        ``fedloop demo``'s).
    dashboard : bool, default True
        Serve the dashboard (its deployments page reads ``controller.serving_url``).

    Returns
    -------
    Starlette
        The app.
    """
    metadata = monitor.ws.metadata

    async def actions(request: Request) -> Response:
        try:
            found = await run_in_threadpool(
                metadata.list_loop_actions,
                model_name=request.query_params.get("model"),
                policy=request.query_params.get("policy"),
                open_only=request.query_params.get("open") in ("1", "true"),
                limit=int_param(request, "limit", 100) or 100,
            )
        except FedloopError as err:
            return error_response(err)
        return JSONResponse({"actions": [a.to_dict() for a in found]})

    async def trigger(request: Request) -> Response:
        try:
            body = await request.body()
            reason = ""
            if body:
                try:
                    doc = json.loads(body)
                except ValueError as err:
                    raise InvalidInput("the body is not JSON.", field="body") from err
                if not isinstance(doc, dict) or not isinstance(doc.get("reason", ""), str):
                    raise InvalidInput('send {"reason": "..."} or nothing.', field="reason")
                reason = doc.get("reason", "")
            action = await run_in_threadpool(
                controller.trigger_manually,
                request.path_params["name"],
                reason=reason,
                actor=actor(request),
            )
        except FedloopError as err:
            return error_response(err)
        return JSONResponse(action.to_dict(), status_code=201)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=PROMETHEUS)

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{DASHBOARD_PREFIX}/runs", status_code=303)

    ui = []
    if dashboard:
        ui = [
            Route("/", home, methods=["GET"]),
            Mount(
                DASHBOARD_PREFIX,
                app=create_dashboard(
                    monitor.ws,
                    access=access,
                    serving_url=controller.serving_url,
                    controller=controller,
                ),
            ),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = None
        if run_controller:
            thread = threading.Thread(
                target=controller.run, args=(stop,), name="fedloop-controller", daemon=True
            )
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                await run_in_threadpool(thread.join, 30.0)
            controller.close()
            await run_in_threadpool(monitor.close)

    return Starlette(
        routes=[
            *monitor_routes(monitor, max_body_bytes=max_body_bytes, access=access),
            Route("/v1/loop/actions", guarded(access, "viewer", actions), methods=["GET"]),
            Route(
                "/v1/loop/policies/{name}/trigger",
                guarded(access, "operator", trigger),
                methods=["POST"],
            ),
            *credential_routes(metadata, access),
            Route("/metrics", guarded(access, "viewer", metrics), methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            *ui,
        ],
        lifespan=lifespan,
    )


def control_app_from_environ() -> Starlette:
    """Build the control plane from ``CONTROL_CONFIG_ENV`` and ``SERVING_URL_ENV`` (uvicorn factory).

    API keys follow ``[api]`` for a server bound to ``monitoring.host``; the key in
    ``SERVING_KEY_ENV`` (``fedloop up``'s own inference server) may send payload logs.

    Returns
    -------
    Starlette
        The control plane over the configured workspace.
    """
    from fedloop.store import open_workspace

    config = FedloopConfig.model_validate_json(os.environ[CONTROL_CONFIG_ENV])
    ws = open_workspace(config)
    cfg = config.monitoring
    access = Access(
        StoreAuthenticator(ws.metadata, "api"),
        config.api,
        host=cfg.host,
        serving_key=os.environ.get(SERVING_KEY_ENV) or None,
    )
    monitor = Monitor(ws, cfg, sinks=[WebhookSink(url) for url in cfg.webhooks])
    controller = Controller(
        ws, config.automation, serving_url=os.environ.get(SERVING_URL_ENV) or None
    )
    return create_control_app(monitor, controller, max_body_bytes=cfg.max_body_bytes, access=access)
