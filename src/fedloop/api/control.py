"""The control plane's app: monitor ingest, the closed loop's actions, the controller as a task."""

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
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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

__all__ = [
    "CONTROL_CONFIG_ENV",
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
) -> Starlette:
    """Return the control plane: the monitor's routes, the loop's actions, the controller.

    Routes: :func:`fedloop.api.monitor.monitor_routes`, ``GET /v1/loop/actions``
    (``?model=&policy=&open=1&limit=``), ``POST /v1/loop/policies/{name}/trigger`` (a manual
    trigger; body ``{"reason": "..."}`` optional), ``GET /metrics`` (the monitor's gauges) and
    ``GET /health/live``. On startup the controller runs in a thread, ticking every
    ``automation.tick_s``; on shutdown it stops and the monitor flushes its open windows.

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
                actor="api",
            )
        except FedloopError as err:
            return error_response(err)
        return JSONResponse(action.to_dict(), status_code=201)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=PROMETHEUS)

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
            *monitor_routes(monitor, max_body_bytes=max_body_bytes),
            Route("/v1/loop/actions", actions, methods=["GET"]),
            Route("/v1/loop/policies/{name}/trigger", trigger, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def control_app_from_environ() -> Starlette:
    """Build the control plane from ``CONTROL_CONFIG_ENV`` and ``SERVING_URL_ENV`` (uvicorn factory).

    Returns
    -------
    Starlette
        The control plane over the configured workspace.
    """
    from fedloop.store import open_workspace

    config = FedloopConfig.model_validate_json(os.environ[CONTROL_CONFIG_ENV])
    ws = open_workspace(config)
    cfg = config.monitoring
    monitor = Monitor(ws, cfg, sinks=[WebhookSink(url) for url in cfg.webhooks])
    controller = Controller(
        ws, config.automation, serving_url=os.environ.get(SERVING_URL_ENV) or None
    )
    return create_control_app(monitor, controller, max_body_bytes=cfg.max_body_bytes)
