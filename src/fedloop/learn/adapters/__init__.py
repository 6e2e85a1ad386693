"""Model adapters: the ModelAdapter protocol and its PyTorch implementation."""

from fedloop.learn.adapters.base import ModelAdapter, StepCallback

__all__ = ["ModelAdapter", "StepCallback"]
