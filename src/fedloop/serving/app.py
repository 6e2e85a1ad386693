"""The inference server's ASGI app: Open Inference Protocol (KServe V2), plain JSON, feedback, metrics."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fedloop import __version__
from fedloop.core import (
    BodyTooLarge,
    FedloopError,
    MalformedBody,
    NotFound,
    ServingConfig,
)
from fedloop.registry import ModelRegistry
from fedloop.serving.metrics import CONTENT_TYPE
from fedloop.serving.router import Deployment, Target
from fedloop.serving.schema import (
    HEADER_LENGTH,
    InferRequest,
    dumps,
    encode_infer_response,
    encode_predict_response,
    parse_infer,
    parse_predict,
)
from fedloop.serving.state import ServingState, read_body

# ServingState and read_body live in state.py; they stay importable from here.
__all__ = ["ServingState", "create_app", "read_body"]

_log = logging.getLogger("fedloop.serving")
_JSON = "application/json"


def _error(err: FedloopError, *, oip: bool = False) -> Response:
    # The Open Inference Protocol's error body is {"error": "<message>"} (clients such as
    # tritonclient print it as a string); the structured form rides along as "detail" there.
    body = {"error": err.message, "detail": err.to_dict()} if oip else {"error": err.to_dict()}
    return Response(dumps(body), status_code=err.http_status, media_type=_JSON)


def _json(data: Any, status: int = 200) -> Response:
    return Response(dumps(data), status_code=status, media_type=_JSON)


def _parse_oip(body: bytes, target: Target, request: Request) -> InferRequest:
    return parse_infer(body, target.runtime, header_length=request.headers.get(HEADER_LENGTH))


def _parse_plain(body: bytes, target: Target, request: Request) -> InferRequest:
    return parse_predict(body, target.runtime)


def _endpoints(state: ServingState) -> list[Route]:
    router = state.router

    async def run(
        request: Request,
        endpoint: str,
        parse: Callable[[bytes, Target, Request], InferRequest],
        encode: Callable[[Target, InferRequest, list[Any], str], Response],
    ) -> Response:
        started = time.perf_counter()
        model = request.path_params.get("name", "")
        if model not in router.deployments:
            model = "_unknown"  # never a label value per name a caller typed (cardinality)
        oip = endpoint == "infer"
        # Once routed, a failure counts against the version that was chosen, so that a failing
        # canary shows in its own requests_total{version, status="5xx"} (the controller reads
        # it), as does a body its signature refuses (422); a body that is no request at all (400,
        # 413) is the caller's doing whatever the version, and stays off the versions' series.
        version = ""
        try:
            deployment, routes, target = state.route(request)
            version = target.runtime.version_text
            parsed, outputs, request_id = await state.handle(request, target, parse)
            response = encode(target, parsed, outputs, request_id)
        except FedloopError as err:
            if isinstance(err, (MalformedBody, BodyTooLarge)):
                version = ""
            state.finish(
                request, endpoint, started, err.http_status, model=model, version=version, error=err
            )
            return _error(err, oip=oip)
        except Exception:  # a bug must not take the server down; the caller gets a 500 body
            _log.exception("internal error on %s", request.url.path)
            internal = FedloopError("internal error; see the server log.")
            state.finish(
                request, endpoint, started, 500, model=model, version=version, error=internal
            )
            return _error(internal, oip=oip)
        state.after(deployment, routes, target, parsed, outputs, request_id)
        state.finish(
            request,
            endpoint,
            started,
            200,
            model=model,
            version=target.runtime.version_text,
            request_id=request_id,
            rows=parsed.rows,
        )
        return response

    def encode_oip(target: Target, parsed: InferRequest, outputs: list[Any], rid: str) -> Response:
        body, head = encode_infer_response(target.runtime, rid, outputs, parsed.outputs)
        if head is None:
            return Response(body, media_type=_JSON, headers={"x-request-id": rid})
        return Response(
            body,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(head), "x-request-id": rid},
        )

    def encode_plain(
        target: Target, parsed: InferRequest, outputs: list[Any], rid: str
    ) -> Response:
        body = encode_predict_response(target.runtime, rid, outputs)
        return Response(body, media_type=_JSON, headers={"x-request-id": rid})

    async def infer(request: Request) -> Response:
        return await run(request, "infer", _parse_oip, encode_oip)

    async def predict(request: Request) -> Response:
        name, _, verb = request.path_params["target"].rpartition(":")
        if verb != "predict" or not name:
            return _error(
                NotFound(
                    f"no such endpoint {request.url.path}.",
                    field="path",
                    hint="POST /v1/models/<name>:predict",
                )
            )
        request.scope["path_params"]["name"] = name
        return await run(request, "predict", _parse_plain, encode_plain)

    async def server_metadata(request: Request) -> Response:
        return _json(
            {"name": "fedloop", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        ok = router.ready
        return _json({"ready": ok}, 200 if ok else 503)

    def _found(request: Request) -> tuple[Deployment, Target]:
        deployment = state._deployment(request)
        routes = deployment.routes
        assert routes is not None  # _deployment checked it
        version = request.path_params.get("version")
        if version is None:
            return deployment, routes.primary
        target = deployment.find_version(version)
        if target is None:
            raise NotFound(
                f"version {version!r} of {deployment.name!r} is not loaded here.",
                field="version",
                value=version,
            )
        return deployment, target

    async def model_metadata(request: Request) -> Response:
        try:
            deployment, target = _found(request)
        except FedloopError as err:
            return _error(err, oip=True)
        data = target.runtime.metadata()
        data["name"] = deployment.name
        if request.path_params.get("version") is None and deployment.routes is not None:
            data["versions"] = sorted(
                {t.runtime.version_text for _, t in deployment.routes.targets()}, key=int
            )
        return _json(data)

    async def model_ready(request: Request) -> Response:
        try:
            deployment, _ = _found(request)
        except FedloopError as err:
            return _error(err, oip=True)
        return _json({"name": deployment.name, "ready": True})

    async def feedback(request: Request) -> Response:
        started = time.perf_counter()
        try:
            accepted, dropped = state.feedback(await read_body(request, state.max_body_bytes))
        except FedloopError as err:
            state.finish(
                request, "feedback", started, err.http_status, model="", version="", error=err
            )
            return _error(err)
        state.finish(request, "feedback", started, 202, model="", version="", rows=accepted)
        return _json({"accepted": accepted, "dropped": dropped}, 202)

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{target}", predict, methods=["POST"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def create_app(
    config: ServingConfig,
    registry: ModelRegistry,
) -> Starlette:
    """Build the inference server: load every configured model, then return the ASGI app.

    Endpoints: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``
    (``/versions/{v}``), ``/v2/models/{name}/ready``; ``POST /v2/models/{name}/infer`` (also
    ``/versions/{v}/infer``; JSON or the binary tensor extension); ``POST
    /v1/models/{name}:predict`` (``{"instances": [...]}`` or ``{"inputs": {...}}``); ``POST
    /v1/feedback``; ``GET /metrics``.

    Parameters
    ----------
    config : ServingConfig
        Models, routing, batching, limits and the payload log.
    registry : ModelRegistry
        Where models come from.

    Returns
    -------
    Starlette
        The app; ``app.state.serving`` is its :class:`ServingState`.

    Raises
    ------
    NotFound, ArtifactMissing, ArtifactCorrupt, InvalidInput
        When a model cannot be resolved or loaded.

    Example
    -------
    >>> app = create_app(config.serving, ModelRegistry(ws.metadata, ws.artifacts, ws.project))  # doctest: +SKIP
    >>> uvicorn.run(app, port=8080)
    """
    state = ServingState(config, registry)
    state.router.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = Starlette(routes=_endpoints(state), lifespan=lifespan)
    app.state.serving = state
    return app
