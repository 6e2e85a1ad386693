"""``fedloop serve``: the inference server (Open Inference Protocol + plain JSON) over registry models."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any

import typer

from fedloop.cli._context import absolute_paths, state, stderr
from fedloop.core import REVEAL_SECRETS, ConfigError, FedloopConfig

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["parse_canary", "serve", "worker_app"]

#: Worker processes read the parent's resolved config from this variable (JSON).
_CONFIG_ENV = "_FEDLOOP_SERVE_CONFIG"


def parse_canary(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``--canary NAME@ALIAS=FRACTION`` into (served name, canary settings).

    Raises
    ------
    ConfigError
        When the text is not of that form.
    """
    ref, sep, fraction = text.rpartition("=")
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    name = ref.split("@", 1)[0].split(":", 1)[0]
    if not sep or not name or not 0.0 <= value <= 1.0:
        raise ConfigError(
            f"`--canary` must look like NAME@ALIAS=FRACTION; got {text!r}.",
            field="canary",
            value=text,
            hint="For 10% of fraud-fl's traffic on its challenger: --canary fraud-fl@challenger=0.1.",
        )
    return name, {"ref": ref, "fraction": value}


def _setup_logging(access_log: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("fedloop.serving.access", "fedloop.serving"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("fedloop.serving").setLevel(logging.INFO)
    logging.getLogger("fedloop.serving.access").setLevel(
        logging.INFO if access_log else logging.WARNING
    )


def _build_app(config: FedloopConfig) -> Starlette:
    from fedloop.registry import ModelRegistry
    from fedloop.serving import create_app
    from fedloop.store import open_workspace

    workspace = open_workspace(config)
    registry = ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
    _setup_logging(config.serving.access_log)
    return create_app(config.serving, registry)


def worker_app() -> Starlette:
    """Build the app in a worker process from the config its parent resolved (uvicorn factory).

    Returns
    -------
    Starlette
        The loaded inference server.
    """
    return _build_app(FedloopConfig.model_validate_json(os.environ[_CONFIG_ENV]))


def _check_refs(config: FedloopConfig) -> None:
    from fedloop.registry import ModelRegistry
    from fedloop.store import open_workspace

    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        serving = config.serving
        refs = [*serving.models, *(c.ref for c in serving.canary.values())]
        for ref in [*refs, *serving.shadow.values()]:
            registry.get(ref)


def serve(
    ctx: typer.Context,
    model: list[str] | None = typer.Option(
        None,
        "--model",
        "-m",
        help="NAME@ALIAS, NAME:VERSION or NAME to serve (repeatable; overrides serving.models).",
    ),
    host: str | None = typer.Option(None, "--host", help="Interface (serving.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="TCP port, 0 for any free one (serving.port)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=256, help="Worker processes on the port (serving.workers)."
    ),
    canary: list[str] | None = typer.Option(
        None, "--canary", help="NAME@ALIAS=FRACTION: send that share of NAME's traffic there."
    ),
    sticky_header: str | None = typer.Option(
        None, "--sticky-header", help="Header that pins a caller to one side of every canary."
    ),
    shadow: list[str] | None = typer.Option(
        None, "--shadow", help="NAME@ALIAS mirrored from NAME's traffic (answers only logged)."
    ),
    batching: bool | None = typer.Option(
        None, "--batching/--no-batching", help="Adaptive batching (serving.batching.enabled)."
    ),
    max_batch_size: int | None = typer.Option(
        None, "--max-batch-size", min=1, help="Rows per onnxruntime call at most."
    ),
    max_wait_ms: float | None = typer.Option(
        None, "--max-wait-ms", min=0.0, help="Longest a request waits to be batched (ms)."
    ),
    max_body_bytes: int | None = typer.Option(
        None, "--max-body-bytes", min=1024, help="Larger request bodies get 413."
    ),
    payload_log_url: str | None = typer.Option(
        None, "--payload-log-url", help="Monitor ingest URL for predictions and labels."
    ),
    payload_log_fraction: float | None = typer.Option(
        None, "--payload-log-fraction", min=0.0, max=1.0, help="Fraction of requests logged."
    ),
    alias_poll: float | None = typer.Option(
        None, "--alias-poll", min=0.0, help="Seconds between alias checks (0: never)."
    ),
    access_log: bool | None = typer.Option(
        None, "--access-log/--no-access-log", help="One JSON line per request on stderr."
    ),
) -> None:
    """Serve registered models over the Open Inference Protocol (KServe V2) and plain JSON.

    Endpoints: POST /v2/models/NAME/infer, POST /v1/models/NAME:predict, POST /v1/feedback,
    GET /v2/health/ready, GET /metrics. Aliases are followed: when NAME@ALIAS moves, the new
    version loads beside the old one and takes over without failing a request.
    """
    overrides: dict[str, Any] = {
        "serving.models": model or None,
        "serving.host": host,
        "serving.port": port,
        "serving.workers": workers,
        "serving.batching.enabled": batching,
        "serving.batching.max_batch_size": max_batch_size,
        "serving.batching.max_wait_ms": max_wait_ms,
        "serving.max_body_bytes": max_body_bytes,
        "serving.payload_log.url": payload_log_url,
        "serving.payload_log.fraction_sampled": payload_log_fraction,
        "serving.alias_poll_s": alias_poll,
        "serving.access_log": access_log,
    }
    for text in canary or []:
        name, settings = parse_canary(text)
        if sticky_header:
            settings["sticky_header"] = sticky_header
        overrides[f"serving.canary.{name}"] = settings
    for ref in shadow or []:
        overrides[f"serving.shadow.{ref.split('@', 1)[0].split(':', 1)[0]}"] = ref
    cli_state = state(ctx)
    cli_state.overrides.update(overrides)
    config = absolute_paths(cli_state.resolved().config)
    serving = config.serving

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    uv_config = uvicorn.Config(
        "fedloop.cli.serve:worker_app",
        factory=True,
        host=serving.host,
        port=serving.port,
        workers=serving.workers,
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )
    sock = uv_config.bind_socket()
    # Replies are small and written at once: never let Nagle hold them back (PITFALLS.md).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bound = sock.getsockname()[1]
    where = f"http://{serving.host}:{bound}"
    if serving.workers == 1:
        uv_config.app = _build_app(config)
        uv_config.factory = False
        stderr.print(f"fedloop serve: {', '.join(serving.models)} on {where} (1 worker)")
        uvicorn.Server(uv_config).run(sockets=[sock])
        return
    _check_refs(config)
    # The workers rebuild the config from JSON: secrets (the payload log's API key) included.
    os.environ[_CONFIG_ENV] = config.model_dump_json(context={REVEAL_SECRETS: True})
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="fedloop-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    stderr.print(
        f"fedloop serve: {', '.join(serving.models)} on {where} ({serving.workers} workers)"
    )
    try:
        Multiprocess(uv_config, sockets=[sock]).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
