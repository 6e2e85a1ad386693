"""``fedloop up``: the control plane (monitor ingest, API, controller) and an inference server."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import typer
from rich.markup import escape

from fedloop.cli._context import absolute_paths, state, stderr
from fedloop.core import FedloopConfig

#: Where the control plane's app factory (``fedloop.api.control``) finds its inputs; the CLI and
#: the API are shells on one layer and do not import each other (a test checks the names match).
_CONTROL_CONFIG_ENV = "_FEDLOOP_CONTROL_CONFIG"
_SERVING_URL_ENV = "_FEDLOOP_CONTROL_SERVING_URL"
_SERVING_KEY_ENV = "_FEDLOOP_CONTROL_SERVING_KEY"
#: How the inference server child gets the key (``serving.payload_log.api_key``).
_PAYLOAD_KEY_ENV = "FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _death_signal() -> Callable[[], None] | None:
    """Return a pre-exec hook that makes Linux SIGTERM the child when its parent dies.

    Even a SIGKILLed ``fedloop up`` then leaves no orphan server. libc is loaded here, in the
    parent, so the child (between fork and exec) only makes one C call: no import, no lock.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:  # pragma: no cover - runs in the child
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return hook


def _models_exist(config: FedloopConfig) -> bool:
    from fedloop.core import NotFound
    from fedloop.registry import ModelRegistry
    from fedloop.store import open_workspace

    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        try:
            for ref in config.serving.models:
                registry.get(ref)
        except NotFound:
            return False
    return True


class _ServeKeeper:
    """Runs ``fedloop serve`` as a child once the served models exist; restarts it if it dies."""

    def __init__(self, config: FedloopConfig, port: int, ingest_url: str, api_key: str) -> None:
        self.config = config
        self.port = port
        self.ingest_url = ingest_url
        # The key the control plane takes from this server's payload log (role client, never
        # stored): it lives as long as this `fedloop up`.
        self.api_key = api_key
        self.url = f"http://{config.serving.host}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._death_hook = _death_signal()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="fedloop-serve-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _argv(self) -> list[str]:
        c = self.config
        return [
            sys.executable,
            "-m",
            "fedloop.cli",
            "--store-url",
            c.store_url(),
            "--artifacts-url",
            c.artifacts_url(),
            "--project",
            c.project.name,
            "serve",
            "--host",
            c.serving.host,
            "--port",
            str(self.port),
            "--payload-log-url",
            self.ingest_url,
        ]

    def _keep(self) -> None:
        announced = False
        backoff_s = 1.0
        while not self._stop.is_set():
            if self.proc is None or self.proc.poll() is not None:
                if self.proc is not None:
                    stderr.print(
                        f"[yellow]fedloop up:[/] the inference server exited "
                        f"({self.proc.returncode}); restarting in {backoff_s:.0f} s"
                    )
                    self._stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, 30.0)
                if self._stop.is_set():
                    return
                try:
                    ready = _models_exist(self.config)
                except Exception as err:  # the store may be busy; try again soon
                    stderr.print(f"[yellow]fedloop up:[/] {escape(str(err))}")
                    ready = False
                if not ready:
                    if not announced:
                        stderr.print(
                            f"fedloop up: waiting for {', '.join(self.config.serving.models)} "
                            "to be registered before serving it"
                        )
                        announced = True
                    self._stop.wait(2.0)
                    continue
                # Its own session: a terminal's Ctrl-C reaches `fedloop up` only, which then
                # stops the server in order (no restart race); and it dies with `fedloop up`
                # even when that is killed outright.
                self.proc = subprocess.Popen(
                    self._argv(),
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, _PAYLOAD_KEY_ENV: self.api_key},
                    start_new_session=True,
                    preexec_fn=self._death_hook,
                )
                stderr.print(f"fedloop up: inference server at {self.url} (pid {self.proc.pid})")
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def up(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (monitoring.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Control plane port (monitoring.port)."
    ),
    serve_port: int | None = typer.Option(
        None, "--serve-port", min=0, max=65535, help="Inference server port (serving.port)."
    ),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Also run the inference server."),
) -> None:
    """Run the closed loop on this machine: control plane, monitor, controller, inference server.

    The control plane (monitor ingest, loop API, the controller reconciling the policies of
    [[automation.policies]]) listens on monitoring.host:port; the inference server (fedloop
    serve, serving.models) starts once its models are registered, with its payload log pointed
    at the control plane. Ctrl-C stops both cleanly (open monitor windows are checked first).
    """
    cli_state = state(ctx)
    cli_state.overrides.update(
        {"monitoring.host": host, "monitoring.port": port, "serving.port": serve_port}
    )
    config = absolute_paths(cli_state.resolved().config)
    ws = cli_state.workspace()  # migrate and fail here, clearly, if the store cannot be opened
    mon = config.monitoring
    keys_needed = config.api.auth_required(
        mon.host, keys_exist=ws.metadata.has_credentials("api")
    )  # and refuse api.auth = "off" off loopback before binding

    import uvicorn

    uv_config = uvicorn.Config(
        "fedloop.api.control:control_app_from_environ",
        factory=True,
        host=mon.host,
        port=mon.port,
        log_level="warning",
        access_log=False,
    )
    sock = uv_config.bind_socket()
    control_url = f"http://{mon.host}:{sock.getsockname()[1]}"
    keeper = None
    if serve:
        serving_port = config.serving.port or _free_port(config.serving.host)
        serving_key = secrets.token_urlsafe(32)
        keeper = _ServeKeeper(config, serving_port, f"{control_url}/v1/monitor/ingest", serving_key)
        os.environ[_SERVING_URL_ENV] = keeper.url
        os.environ[_SERVING_KEY_ENV] = serving_key
    os.environ[_CONTROL_CONFIG_ENV] = config.model_dump_json()
    policies = [p.name for p in config.automation.policies if p.enabled]
    stderr.print(
        f"fedloop up: control plane at {control_url} "
        f"(ingest {control_url}/v1/monitor/ingest, actions {control_url}/v1/loop/actions); "
        f"policies: {', '.join(policies) or 'none'}"
    )
    stderr.print(
        f"fedloop up: dashboard at {control_url}/ui/"
        + (" (log in with an API key of role viewer or above)" if keys_needed else "")
    )
    stderr.print(
        "fedloop up: API keys required (fedloop keys create --role R NAME)"
        if keys_needed
        else f"fedloop up: API open on loopback (api.auth = {config.api.auth}"
        + ("; the first `fedloop keys create` turns keys on)" if config.api.auth == "auto" else ")")
    )
    if keeper is not None:
        keeper.start()
    try:
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        if keeper is not None:
            keeper.stop()
        for name in (_CONTROL_CONFIG_ENV, _SERVING_KEY_ENV):
            with contextlib.suppress(KeyError):
                del os.environ[name]
        stderr.print("fedloop up: stopped")
