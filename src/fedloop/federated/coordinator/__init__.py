"""The coordinator: a transport-free state machine for federated rounds (issue 3)."""

__all__: list[str] = []
