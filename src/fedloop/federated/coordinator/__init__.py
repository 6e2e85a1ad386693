"""The coordinator: a transport-free state machine for federated rounds, checkpointed per round."""

from fedloop.federated.coordinator.asynchronous import AsyncCoordinator, concurrent_fit
from fedloop.federated.coordinator.coordinator import Coordinator, RoundReport, select_clients
from fedloop.federated.coordinator.validation import check_update

__all__ = [
    "AsyncCoordinator",
    "Coordinator",
    "RoundReport",
    "check_update",
    "concurrent_fit",
    "select_clients",
]
