"""A simulation worker process: hosts many virtual clients and trains them on request.

Started by :class:`fedloop.federated.simulation.LocalBackend` as
``python -m fedloop.federated.simulation.worker``; it reads its spec (the client factory's
dotted path and JSON keyword arguments) from the first frame on stdin, then answers "round"
frames, one result frame per client, until stdin closes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from fedloop.core import FedloopError, InvalidInput, decode_parameters, encode_parameters
from fedloop.federated.client import Client, run_task
from fedloop.federated.messages import FitIns
from fedloop.federated.wire import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, read_frame, write_frame

__all__ = ["ClientHost", "load_factory", "main", "serve"]

ClientFactory = Callable[..., Client]


def load_factory(path: str) -> ClientFactory:
    """Import ``package.module:function`` and return the function."""
    module_name, _, attr = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise TypeError(f"{path} is not callable")
    return factory  # type: ignore[no-any-return]


class ClientHost:
    """Many virtual clients of one factory, each built on its first round and then kept.

    Shared by the pipe worker (:func:`serve`) and the Ray actor of
    :class:`~fedloop.federated.simulation.RayBackend`, so that both answer alike.

    Parameters
    ----------
    factory : callable
        ``factory(client_id, **kwargs) -> Client``.
    kwargs : Mapping
        Keyword arguments for the factory.
    """

    def __init__(self, factory: ClientFactory, kwargs: Mapping[str, Any]) -> None:
        self.factory = factory
        self.kwargs = dict(kwargs)
        self.clients: dict[str, Client] = {}

    def fit(self, client_id: str, ins: FitIns) -> tuple[dict[str, Any], bytes]:
        """Train one client and return a JSON-safe result header and its safetensors body.

        A client (or its factory) that raises gets an ``"error"`` header and an empty body;
        the header is checked to fit a frame, so it can always be sent.
        """
        started = time.perf_counter()
        try:
            client = self.clients.get(client_id)
            if client is None:
                client = self.clients[client_id] = self.factory(client_id, **self.kwargs)
            res = run_task(client, ins)
            body = encode_parameters(res.parameters)
            header: dict[str, Any] = {
                "type": "result",
                "client_id": client_id,
                "num_examples": res.num_examples,
                "metrics": dict(res.metrics),
                "round": res.round_num,
                "seconds": time.perf_counter() - started,
            }
            _check_frame(header, body)
            return header, body
        except (
            FedloopError,
            ArithmeticError,
            ValueError,
            RuntimeError,
            KeyError,
            TypeError,
        ) as err:
            return {
                "type": "result",
                "client_id": client_id,
                "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - started,
                "trace": traceback.format_exc(limit=3),
            }, b""


def _check_frame(header: dict[str, Any], body: bytes) -> None:
    """Raise what :func:`write_frame` would raise for this header and body, before sending."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(head) > MAX_HEADER_BYTES or len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidInput("frame too large to send.", field="frame")


def serve(stdin: Any, stdout: Any) -> None:
    """Answer frames until stdin closes."""
    spec, _ = read_frame(stdin)
    host = ClientHost(load_factory(spec["factory"]), dict(spec.get("kwargs", {})))
    write_frame(stdout, {"type": "ready"})
    while True:
        try:
            header, payload = read_frame(stdin)
        except EOFError:
            return
        if header.get("type") != "round":
            write_frame(
                stdout, {"type": "error", "error": f"unknown frame type {header.get('type')!r}"}
            )
            continue
        params = decode_parameters(payload)
        ins = FitIns(int(header["round"]), params, dict(header.get("config", {})))
        for client_id in header["clients"]:
            write_frame(stdout, *host.fit(client_id, ins))


def main() -> None:
    """Run the worker on this process's stdin and a private copy of its stdout."""
    # Frames go to a duplicate of fd 1; anything a library prints lands on stderr instead.
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, frames)
    # stdin closed: nothing is left to answer. Skip the interpreter's teardown (unloading
    # torch takes most of a second) so the pool closes at once.
    frames.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
