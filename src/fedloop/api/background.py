"""Running an ASGI app under uvicorn in a background thread on a free loopback port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(
    app: Any,
    *,
    host: str = "127.0.0.1",
    start_timeout_s: float = 30.0,
    stop_timeout_s: float = 30.0,
) -> Iterator[str]:
    """Serve ``app`` (lifespan on) in a daemon thread; yield its base URL, stop it on exit.

    For embedding servers in one process (``fedloop demo``, tests).

    Parameters
    ----------
    app : ASGI app
        The application.
    host : str, default "127.0.0.1"
        Interface; the port is any free one.
    start_timeout_s, stop_timeout_s : float, default 30.0
        How long to wait for the server to start, and for its thread to end.

    Raises
    ------
    RuntimeError
        When the server does not start in time (its thread died or is too slow).
    """
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="fedloop-uvicorn")
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server did not start within {start_timeout_s:g} s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(stop_timeout_s)
