"""Drift tests, windows, performance with delayed labels and alerts (issue 5)."""

__all__: list[str] = []
