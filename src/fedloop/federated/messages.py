"""What travels between the coordinator and clients: fit instructions, results and outcomes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedloop.core import Parameters

__all__ = ["FitIns", "FitOutcome", "FitRes", "own_settings", "payload_bytes"]


def payload_bytes(parameters: Parameters) -> int:
    """Return the size of the raw tensor payload (what the binary codec sends, less headers)."""
    return int(sum(array.nbytes for array in parameters.values()))


@dataclass(frozen=True)
class FitIns:
    """An instruction to train: the global model of ``round_num`` and per-round settings."""

    round_num: int
    parameters: Parameters
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FitRes:
    """A client's answer: its trained weights, how many examples it used and its metrics."""

    parameters: Parameters
    num_examples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    round_num: int = 0


@dataclass(frozen=True)
class FitOutcome:
    """What the transport observed for one selected client in one round."""

    client_id: str
    result: FitRes | None
    error: str | None = None
    timed_out: bool = False
    seconds: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0


def own_settings(
    instructions: Mapping[str, FitIns], client_ids: Sequence[str], shared: Mapping[str, Any]
) -> dict[str, Mapping[str, Any]]:
    """Return the settings of the clients among ``client_ids`` whose settings differ from ``shared``.

    Transports send one copy of the settings most clients share and these per client (the
    stages of secure aggregation address each client its own message).
    """
    return {c: instructions[c].config for c in client_ids if instructions[c].config != shared}
