"""Payload-log bodies as the inference server writes them, for the monitor's tests."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

MODEL = "fraud"


def tensor(arr: np.ndarray) -> dict[str, Any]:
    """Encode an array as the payload log does: little-endian bytes in base64."""
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def body(
    x: np.ndarray,
    scores: np.ndarray,
    *,
    version: int = 1,
    role: str = "primary",
    start_id: int = 0,
    time_s: float = 1_000.0,
    labels: Sequence[tuple[str, int]] = (),
) -> bytes:
    """Return a payload-log POST body with one request per row of ``x``."""
    n = len(x)
    batch = {
        "model": MODEL,
        "version": version,
        "role": role,
        "request_ids": [f"r{start_id + i}" for i in range(n)],
        "times": [time_s + i * 0.001 for i in range(n)],
        "rows": [1] * n,
        "features": {"features": tensor(x.astype(np.float32))},
        "prediction": {"probability": tensor(scores.astype(np.float32).reshape(-1, 1))},
    }
    feedback = [
        {"kind": "feedback", "request_id": rid, "label": label, "time": time_s + 10, "model": MODEL}
        for rid, label in labels
    ]
    return json.dumps({"predictions": [batch] if n else [], "feedback": feedback}).encode()


def ingest_rows(monitor: Any, x: np.ndarray, *, start_id: int, version: int = 1) -> Any:
    """Score ``x`` with the version's graph (as serving would) and ingest it as one body."""
    from fedloop.monitoring import predict_onnx
    from fedloop.registry import ModelRegistry

    registry = ModelRegistry(monitor.ws.metadata, monitor.ws.artifacts, monitor.ws.project)
    graph = registry.load_onnx(monitor.ws.metadata.get_model_version(MODEL, version))
    scores = predict_onnx(graph, x)[:, 0]
    return monitor.ingest(body(x, scores, version=version, start_id=start_id))
