"""Federated training: coordinator, strategies, secure aggregation, privacy, clients, transports and simulation (issue 3)."""

__all__: list[str] = []
