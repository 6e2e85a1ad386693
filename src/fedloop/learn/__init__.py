"""Model adapters, local train/evaluate loops and metrics (torch is imported only by its adapter)."""

from fedloop.learn.adapters import ModelAdapter, StepCallback
from fedloop.learn.metrics import binary_metrics

__all__ = ["ModelAdapter", "StepCallback", "binary_metrics"]
