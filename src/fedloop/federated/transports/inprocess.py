"""``InProcessTransport``: clients are objects in this process (tests and small simulations)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from fedloop.core import FedloopError
from fedloop.federated.client import Client, run_task
from fedloop.federated.messages import FitIns, FitOutcome, payload_bytes

__all__ = ["InProcessTransport"]


class InProcessTransport:
    """Call client objects directly, one after another, in client-id order.

    A client that raises is reported as failed with the error's text; the deadline is checked
    between clients (a client cannot be interrupted mid-call in-process).

    Parameters
    ----------
    clients : Mapping[str, Client]
        Client id -> client.
    """

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self.clients = dict(clients)
        self.offline: set[str] = set()

    def list_clients(self) -> Sequence[str]:
        """Return the ids of the clients that are not marked offline, sorted."""
        return sorted(c for c in self.clients if c not in self.offline)

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        """Run each client's fit in turn until the deadline or until ``enough`` succeeded."""
        deadline = time.monotonic() + timeout_s
        outcomes: list[FitOutcome] = []
        succeeded = 0
        for client_id in sorted(instructions):
            ins = instructions[client_id]
            down = payload_bytes(ins.parameters)
            if time.monotonic() > deadline or (enough is not None and succeeded >= enough):
                outcomes.append(
                    FitOutcome(client_id, None, "not needed or past the deadline", timed_out=True)
                )
                continue
            started = time.perf_counter()
            try:
                result = run_task(self.clients[client_id], ins)
            except (FedloopError, ArithmeticError, ValueError, RuntimeError, KeyError) as err:
                outcomes.append(
                    FitOutcome(
                        client_id,
                        None,
                        f"{type(err).__name__}: {err}",
                        seconds=time.perf_counter() - started,
                        bytes_down=down,
                    )
                )
                continue
            outcomes.append(
                FitOutcome(
                    client_id,
                    result,
                    seconds=time.perf_counter() - started,
                    bytes_up=payload_bytes(result.parameters),
                    bytes_down=down,
                )
            )
            succeeded += 1
        return outcomes

    def close(self) -> None:
        """Nothing to release."""
