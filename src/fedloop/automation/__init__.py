"""Policies and the controller that reconciles desired and actual state (issue 6)."""

__all__: list[str] = []
