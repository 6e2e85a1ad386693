"""The monitor's HTTP surface: payload-log ingest, checked windows, Prometheus metrics."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedloop.api.auth import Access, guarded
from fedloop.core import FedloopConfig, FedloopError, InvalidInput
from fedloop.monitoring import Monitor, WebhookSink
from fedloop.serving import read_body
from fedloop.store import SqlMetadataStore, StoreAuthenticator

__all__ = [
    "CONFIG_ENV",
    "PROMETHEUS",
    "access_for",
    "app_from_environ",
    "create_monitor_app",
    "error_response",
    "int_param",
    "live",
    "monitor_routes",
]

#: Environment variable through which ``fedloop monitor serve`` hands its resolved config to
#: :func:`app_from_environ` (the shells do not import each other; uvicorn loads the app by name).
CONFIG_ENV = "_FEDLOOP_MONITOR_CONFIG"

_log = logging.getLogger("fedloop.api.monitor")
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def error_response(err: FedloopError) -> JSONResponse:
    """Answer ``{"error": {code, message, field, hint}}`` with the error's HTTP status."""
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)


def int_param(request: Request, name: str, default: int | None) -> int | None:
    """Read a non-negative integer query parameter (InvalidInput naming it otherwise)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise InvalidInput(
            f"query parameter `{name}` must be a non-negative integer; got {raw!r}.",
            field=name,
            value=raw,
        )
    return int(raw)


def monitor_routes(
    monitor: Monitor, *, max_body_bytes: int, access: Access | None = None
) -> list[Route]:
    """Return the monitor's routes: ingest and checked windows (shared with the control plane).

    ``POST /v1/monitor/ingest`` (role ``client`` or above) takes a payload-log body (200 with
    what was taken, 400 naming the bad field, 413 when too large) and runs in a worker
    thread, so a window check never blocks the event loop;
    ``GET /v1/monitor/models/{name}/windows`` (``viewer``) lists checked windows
    (``?kind=drift|performance&version=N&limit=N``). With ``access``, callers need an API key
    of that role when keys are required (401 without one, 403 for a weaker role).
    """

    async def ingest(request: Request) -> Response:
        try:
            body = await read_body(request, max_body_bytes, setting="monitoring.max_body_bytes")
            result = await run_in_threadpool(monitor.ingest, body)
        except FedloopError as err:
            return error_response(err)
        except Exception:  # never crash the ingest: log and answer 500 with a typed body
            _log.exception("ingest failed")
            return error_response(FedloopError("internal error; see the monitor log."))
        return JSONResponse(
            {
                "rows": result.rows,
                "labels": result.labels,
                "joined": result.joined,
                "windows": [
                    {
                        "model": c.model,
                        "version": c.version,
                        "kind": c.kind,
                        "verdict": c.verdict,
                        "window_id": c.window.id,
                    }
                    for c in result.checks
                ],
            }
        )

    async def windows(request: Request) -> Response:
        try:
            kind = request.query_params.get("kind")
            if kind not in (None, "drift", "performance"):
                raise InvalidInput(
                    f"query parameter `kind` must be drift or performance; got {kind!r}.",
                    field="kind",
                    value=kind,
                )
            found = await run_in_threadpool(
                monitor.ws.metadata.list_monitor_windows,
                request.path_params["name"],
                version=int_param(request, "version", None),
                kind=kind,
                limit=int_param(request, "limit", 100) or 100,
            )
        except FedloopError as err:
            return error_response(err)
        return JSONResponse({"windows": [w.to_dict() for w in found]})

    return [
        Route("/v1/monitor/ingest", guarded(access, "client", ingest), methods=["POST"]),
        Route(
            "/v1/monitor/models/{name}/windows",
            guarded(access, "viewer", windows),
            methods=["GET"],
        ),
    ]


async def live(request: Request) -> Response:
    """Answer the liveness probe."""
    return JSONResponse({"live": True})


def create_monitor_app(
    monitor: Monitor, *, max_body_bytes: int = 64 * 1024 * 1024, access: Access | None = None
) -> Starlette:
    """Return the ASGI app that receives the inference servers' payload logs.

    Routes: :func:`monitor_routes`, ``GET /metrics`` (the monitor's gauges; ``viewer``) and
    ``GET /health/live`` (open).

    Parameters
    ----------
    monitor : Monitor
        The monitor that owns the windows.
    max_body_bytes : int, default 64 MiB
        Largest ingest body taken.
    access : Access or None
        Who may call which route (None: anyone, for an app embedded in a process).

    Returns
    -------
    Starlette
        The app; closing it flushes the monitor's open windows.
    """

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(monitor.metrics.registry), media_type=PROMETHEUS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(monitor.close)

    return Starlette(
        routes=[
            *monitor_routes(monitor, max_body_bytes=max_body_bytes, access=access),
            Route("/metrics", guarded(access, "viewer", metrics), methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def access_for(config: FedloopConfig, metadata: SqlMetadataStore, *, host: str) -> Access:
    """Return the access rules of a server bound to ``host`` over the store's API keys.

    Raises
    ------
    ConfigError
        When ``api.auth = "off"`` and ``host`` is not loopback.
    """
    return Access(StoreAuthenticator(metadata, "api"), config.api, host=host)


def app_from_environ() -> Starlette:
    """Build the monitor app from the config in ``CONFIG_ENV`` (a uvicorn app factory).

    Returns
    -------
    Starlette
        The monitor's app over the configured workspace, with a webhook sink per
        ``monitoring.webhooks`` URL.
    """
    from fedloop.store import open_workspace

    config = FedloopConfig.model_validate_json(os.environ[CONFIG_ENV])
    ws = open_workspace(config)
    cfg = config.monitoring
    access = access_for(config, ws.metadata, host=cfg.host)
    monitor = Monitor(ws, cfg, sinks=[WebhookSink(url) for url in cfg.webhooks])
    return create_monitor_app(monitor, max_body_bytes=cfg.max_body_bytes, access=access)
