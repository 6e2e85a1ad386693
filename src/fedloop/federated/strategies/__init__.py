"""Aggregation strategies behind one interface: FedAvg, FedProx, FedAdam and robust rules (issue 3)."""

__all__: list[str] = []
