"""W-SERVE's limit: a thin FastAPI + uvicorn endpoint calling onnxruntime directly.

Runs in ``.bench-venvs/thin`` (``bash benchmarks/setup_peers.sh thin``). No validation, no
metrics, no payload log: parse the JSON body, run the graph, answer. One uvicorn worker (with
two or more, reused keep-alive connections can stall, PITFALLS.md); uvicorn's transports set
TCP_NODELAY. onnxruntime runs with one intra-op thread: the fastest setting for this tiny MLP
on two cores shared with the load generator.

Request: ``POST /predict`` with ``{"features": [[30 floats], ...]}``;
answer: ``{"probability": [p, ...]}``. Readiness: ``GET /health``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response


def build_app(model_path: str) -> FastAPI:
    """Return the app serving the ONNX graph at ``model_path``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    app = FastAPI()

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = json.loads(await request.body())
        x = np.asarray(body["features"], dtype=np.float32)
        out = session.run(None, {input_name: x})[0].reshape(-1)
        return Response(
            json.dumps({"probability": out.tolist()}).encode(), media_type="application/json"
        )

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True, help="ONNX file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(
        build_app(args.model),
        host=args.host,
        port=args.port,
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
