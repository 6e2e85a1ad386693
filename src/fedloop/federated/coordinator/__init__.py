"""The coordinator: a transport-free state machine for federated rounds, checkpointed per round."""

from fedloop.federated.coordinator.coordinator import Coordinator, RoundReport, select_clients
from fedloop.federated.coordinator.validation import check_update

__all__ = ["Coordinator", "RoundReport", "check_update", "select_clients"]
