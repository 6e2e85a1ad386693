"""Fraud, healthcare and manufacturing scenarios: data, models and demo flows (top layer)."""

__all__: list[str] = []
