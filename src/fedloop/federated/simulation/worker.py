"""A simulation worker process: hosts many virtual clients and trains them on request.

Started by :class:`fedloop.federated.simulation.LocalBackend` as
``python -m fedloop.federated.simulation.worker``; it reads its spec (the client factory's
dotted path and JSON keyword arguments) from the first frame on stdin, then answers "round"
frames, one result frame per client, until stdin closes.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from fedloop.core import FedloopError, decode_parameters, encode_parameters
from fedloop.federated.client import Client
from fedloop.federated.messages import FitIns
from fedloop.federated.wire import read_frame, write_frame

__all__ = ["load_factory", "main", "serve"]

ClientFactory = Callable[..., Client]


def load_factory(path: str) -> ClientFactory:
    """Import ``package.module:function`` and return the function."""
    module_name, _, attr = path.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    if not callable(factory):
        raise TypeError(f"{path} is not callable")
    return factory  # type: ignore[no-any-return]


def serve(stdin: Any, stdout: Any) -> None:
    """Answer frames until stdin closes."""
    spec, _ = read_frame(stdin)
    factory = load_factory(spec["factory"])
    kwargs = dict(spec.get("kwargs", {}))
    clients: dict[str, Client] = {}
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
            started = time.perf_counter()
            try:
                client = clients.get(client_id)
                if client is None:
                    client = clients[client_id] = factory(client_id, **kwargs)
                res = client.fit(ins)
                body = encode_parameters(res.parameters)
                write_frame(
                    stdout,
                    {
                        "type": "result",
                        "client_id": client_id,
                        "num_examples": res.num_examples,
                        "metrics": dict(res.metrics),
                        "round": res.round_num,
                        "seconds": time.perf_counter() - started,
                    },
                    body,
                )
            except (
                FedloopError,
                ArithmeticError,
                ValueError,
                RuntimeError,
                KeyError,
                TypeError,
            ) as err:
                write_frame(
                    stdout,
                    {
                        "type": "result",
                        "client_id": client_id,
                        "error": f"{type(err).__name__}: {err}",
                        "seconds": time.perf_counter() - started,
                        "trace": traceback.format_exc(limit=3),
                    },
                )


def main() -> None:
    """Run the worker on this process's stdin and a private copy of its stdout."""
    # Frames go to a duplicate of fd 1; anything a library prints lands on stderr instead.
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, frames)


if __name__ == "__main__":
    main()
