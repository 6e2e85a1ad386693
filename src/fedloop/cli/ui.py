"""``fedloop ui``: the dashboard alone over the store, read-only (``fedloop up`` serves it too)."""

from __future__ import annotations

import contextlib
import os

import typer

from fedloop.cli._context import absolute_paths, state, stderr

#: Where the dashboard's app factory (``fedloop.api.dashboard``) finds its inputs; the CLI and
#: the API are shells on one layer and do not import each other (a test checks the names match).
_CONFIG_ENV = "_FEDLOOP_DASHBOARD_CONFIG"
_HOST_ENV = "_FEDLOOP_DASHBOARD_HOST"
_SERVING_URL_ENV = "_FEDLOOP_DASHBOARD_SERVING_URL"
#: The default port: beside the control plane's 8500.
DEFAULT_PORT = 8600


def ui(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (default monitoring.host)."),
    port: int = typer.Option(
        DEFAULT_PORT, "--port", min=0, max=65535, help="TCP port (0: any free one)."
    ),
    serving_url: str | None = typer.Option(
        None,
        "--serving-url",
        help="An inference server (fedloop serve) whose /metrics give latency and error rates.",
    ),
) -> None:
    """Serve the dashboard over the store, read-only: runs, models, deployments, drift, audit.

    The same pages as `fedloop up` serves under /ui/, without the loop's controller (so no
    manual trigger). API keys work as on the control plane ([api] auth): off loopback, or
    once the store holds any key, the pages ask for a key of role viewer or above.
    """
    cli_state = state(ctx)
    config = absolute_paths(cli_state.resolved().config)
    ws = cli_state.workspace()  # migrate and fail here, clearly, if the store cannot be opened
    bind = host or config.monitoring.host
    keys_needed = config.api.auth_required(
        bind, keys_exist=ws.metadata.has_credentials("api")
    )  # and refuse api.auth = "off" off loopback before binding

    import uvicorn

    uv_config = uvicorn.Config(
        "fedloop.api.dashboard:dashboard_app_from_environ",
        factory=True,
        host=bind,
        port=port,
        log_level="warning",
        access_log=False,
    )
    sock = uv_config.bind_socket()
    os.environ[_CONFIG_ENV] = config.model_dump_json()
    os.environ[_HOST_ENV] = bind
    if serving_url:
        os.environ[_SERVING_URL_ENV] = serving_url
    url = f"http://{bind}:{sock.getsockname()[1]}/ui/"
    stderr.print(
        f"fedloop ui: dashboard at {url} (read-only; "
        + (
            "log in with an API key of role viewer or above)"
            if keys_needed
            else "open on loopback)"
        )
    )
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        for name in (_CONFIG_ENV, _HOST_ENV, _SERVING_URL_ENV):
            with contextlib.suppress(KeyError):
                del os.environ[name]
        stderr.print("fedloop ui: stopped")
