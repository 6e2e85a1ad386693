"""ONNX graphs shared by the tests of several packages (serving, monitoring)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NUM_FEATURES = 4


def make_graph(seed: int, *, num_features: int = NUM_FEATURES) -> bytes:
    """Return a Gemm + Sigmoid classifier float32 (batch, n) -> (batch, 1) with seeded weights."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(
        rng.normal(size=(num_features, 1)).astype(np.float32), name="weight"
    )
    bias = numpy_helper.from_array(np.full(1, 0.1 * seed, dtype=np.float32), name="bias")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "weight", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", num_features])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
