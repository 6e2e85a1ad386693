"""Helpers of the serving tests: a small ONNX classifier, request bodies, a server in a thread."""

from __future__ import annotations

from typing import Any

import numpy as np

NUM_FEATURES = 4
MODEL = "fraud"


def weights() -> Any:
    """Return placeholder parameters (the server never reads weights)."""
    from collections import OrderedDict

    return OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])


def oip_body(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    """Return an OIP JSON request for a (n, 4) float32 batch."""
    return {
        "inputs": [
            {
                "name": "features",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ],
        **extra,
    }


def reference(seed: int, rows: np.ndarray) -> np.ndarray:
    """Return what the graph of ``seed`` predicts, computed with numpy."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(NUM_FEATURES, 1)).astype(np.float32)
    return 1 / (1 + np.exp(-(rows.astype(np.float32) @ weight + np.float32(0.1 * seed))))
