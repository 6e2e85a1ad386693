"""An MLServer custom runtime serving the W-FL ONNX MLP (MLServer has no ONNX runtime of its own).

Loaded by MLServer from ``.bench-venvs/mlserver`` (``implementation":
"mlserver_serve_onnx.OnnxRuntime"``, with this folder on PYTHONPATH). It decodes the V2 request
with MLServer's NumpyCodec and runs onnxruntime with one intra-op thread, as the thin endpoint
does, so the ``mlserver-onnx`` row is MLServer's own overhead on the very model fedloop serves.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    """Run an ONNX graph: first input tensor in, first output tensor out."""

    async def load(self) -> bool:
        """Open the onnxruntime session of the model's ``uri``."""
        path = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Score the rows of the first input."""
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        out = self._session.run(None, {self._input: x})[0]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(self._output, out)],
        )
