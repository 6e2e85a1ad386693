"""The inference server: routing between versions, batching, validation, metrics, payload log."""

from fedloop.serving.app import create_app
from fedloop.serving.batching import AdaptiveBatcher
from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.payload_log import PayloadLog
from fedloop.serving.router import Deployment, Router, Routes, Target
from fedloop.serving.runtime import ModelRuntime, load_runtime
from fedloop.serving.schema import InferRequest
from fedloop.serving.state import ServingState, read_body

__all__ = [
    "AdaptiveBatcher",
    "Deployment",
    "InferRequest",
    "ModelRuntime",
    "PayloadLog",
    "Router",
    "Routes",
    "ServingMetrics",
    "ServingState",
    "Target",
    "create_app",
    "load_runtime",
    "read_body",
]
