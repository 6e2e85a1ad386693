"""The ``Transport`` interface: how the coordinator reaches clients, whatever the wire."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from fedloop.federated.messages import FitIns, FitOutcome

__all__ = ["Transport"]


@runtime_checkable
class Transport(Protocol):
    """Delivers fit instructions to clients and brings their outcomes back.

    Implementations: in-process (tests), a process pool of virtual clients (simulation) and
    HTTP (one process per silo). The coordinator never knows which one it drives.
    """

    def list_clients(self) -> Sequence[str]:
        """Return the ids of the clients available now, sorted."""
        ...

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        """Send each client its instruction and return one outcome per client.

        Parameters
        ----------
        round_num : int
            The round.
        instructions : Mapping[str, FitIns]
            Client id -> instruction.
        timeout_s : float
            Deadline; clients that have not answered by then get ``timed_out=True``.
        enough : int or None
            The transport may stop waiting once this many clients succeeded (over-selection);
            the rest are reported as timed out.

        Returns
        -------
        list of FitOutcome
            One per instructed client, in any order.
        """
        ...

    def close(self) -> None:
        """Release workers and connections."""
        ...
