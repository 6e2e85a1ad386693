"""One server's state and request path: routing, reading, running, shadowing and logging a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import Request

from fedloop.core import (
    BodyTooLarge,
    Conflict,
    FedloopError,
    InvalidInput,
    MalformedBody,
    NotFound,
    ServingConfig,
)
from fedloop.registry import ModelRegistry
from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.payload_log import PayloadLog
from fedloop.serving.router import Deployment, Router, Routes, Target
from fedloop.serving.runtime import ModelRuntime
from fedloop.serving.schema import InferRequest, dumps, loads

__all__ = ["ServingState", "read_body"]

_access = logging.getLogger("fedloop.serving.access")
_log = logging.getLogger("fedloop.serving")
_MAX_SHADOW_TASKS = 1024


async def read_body(
    request: Request, limit: int, *, setting: str = "serving.max_body_bytes"
) -> bytes:
    """Read a request body of at most ``limit`` bytes, refusing larger ones before reading them.

    Raises
    ------
    BodyTooLarge
        When the declared or the received length passes ``limit`` (HTTP 413); the hint
        names ``setting``, the option that raises the limit.
    """
    hint = f"Send less per request, or raise {setting}."
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(
            f"the request body is {declared} bytes; this server takes at most {limit}.",
            field="body",
            hint=hint,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(
                f"the request body is larger than {limit} bytes.", field="body", hint=hint
            )
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _labels(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedBody(f"the feedback body is not valid JSON: {err}.", field="body") from err
    items = doc.get("labels") if isinstance(doc, dict) and "labels" in doc else [doc]
    if not isinstance(items, list) or not items:
        raise InvalidInput("`labels` must be a non-empty list.", field="labels")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"labels[{i}]" if isinstance(doc, dict) and "labels" in doc else "body"
        if not isinstance(item, dict):
            raise InvalidInput(f"`{where}` must be an object.", field=where)
        rid = item.get("request_id")
        if not isinstance(rid, str) or not 0 < len(rid) <= 256:
            raise InvalidInput(
                f"`{where}.request_id` must be the id of an answered request; got {rid!r}.",
                field=f"{where}.request_id",
                hint="Use the `id` of the inference response (or its x-request-id header).",
            )
        label = item.get("label")
        if isinstance(label, float) and not math.isfinite(label):
            raise InvalidInput(f"`{where}.label` must be finite.", field=f"{where}.label")
        if not isinstance(label, (bool, int, float, str)):
            raise InvalidInput(
                f"`{where}.label` must be a number, a boolean or a string; got {label!r}.",
                field=f"{where}.label",
            )
        model = item.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidInput(f"`{where}.model` must be a string.", field=f"{where}.model")
        out.append({"request_id": rid, "label": label, "model": model})
    return out


class ServingState:
    """Everything one app (one worker process) holds: router, metrics, payload log, threads.

    Parameters
    ----------
    config : ServingConfig
        The server settings.
    registry : ModelRegistry
        Where models are loaded from and aliases resolved.
    """

    def __init__(
        self,
        config: ServingConfig,
        registry: ModelRegistry,
    ) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.executor = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="fedloop-infer"
        )
        self.router = Router(registry, config, metrics=self.metrics, executor=self.executor)
        plog = config.payload_log
        self.payload_log = PayloadLog(
            plog.url,
            metrics=self.metrics,
            fraction_sampled=plog.fraction_sampled,
            queue_size=plog.queue_size,
            max_records_per_post=plog.max_records_per_post,
            timeout_s=plog.timeout_s,
            flush_interval_s=plog.flush_interval_s,
            api_key=plog.api_key.get_secret_value() if plog.api_key else None,
        )
        self.max_body_bytes = config.max_body_bytes
        self.access_log = config.access_log
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the payload-log thread and the alias watcher."""
        self.payload_log.start()
        if self.config.alias_poll_s > 0:
            self._watcher = asyncio.get_running_loop().create_task(
                self.router.watch(self.config.alias_poll_s)
            )

    async def stop(self) -> None:
        """Stop watching, finish in-flight work and flush the payload log."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for task in list(self._shadow_tasks):
            with contextlib.suppress(Exception):
                await task
        await self.router.close()
        await asyncio.to_thread(self.payload_log.close)
        self.executor.shutdown(wait=False)

    def feedback(self, body: bytes) -> tuple[int, int]:
        """Forward late labels (``{"request_id", "label"}`` or ``{"labels": [...]}``) to the monitor.

        Returns
        -------
        (int, int)
            Labels queued and labels dropped (queue full).

        Raises
        ------
        Conflict
            When no payload-log URL is configured.
        InvalidInput
            Naming the malformed field.
        """
        if not self.payload_log.enabled:
            raise Conflict(
                "feedback needs a monitor, and no payload-log URL is configured.",
                field="serving.payload_log.url",
                hint="Set [serving.payload_log] url (or --payload-log-url) to the monitor's ingest URL.",
            )
        labels = _labels(body)
        accepted = 0
        for label in labels:
            accepted += self.payload_log.offer_feedback(label)
        return accepted, len(labels) - accepted

    # -- the inference path --------------------------------------------------------------------
    def _deployment(self, request: Request) -> Deployment:
        name = request.path_params["name"]
        deployment = self.router.get(name)
        if deployment is None or deployment.routes is None:
            raise NotFound(
                f"model {name!r} is not served here.",
                field="model",
                value=name,
                hint=f"Served models: {sorted(self.router.deployments)} (GET /v2/models/<name>).",
            )
        return deployment

    def _target(self, request: Request, deployment: Deployment, routes: Routes) -> Target:
        version = request.path_params.get("version")
        if version is not None:
            target = deployment.find_version(version)
            if target is None:
                raise NotFound(
                    f"version {version!r} of {deployment.name!r} is not loaded here.",
                    field="version",
                    value=version,
                    hint="Omit /versions/<v> to be routed, or GET /v2/models/<name> for versions.",
                )
            return target
        header = routes.sticky_header  # the snapshot's: a split and its key change together
        key = request.headers.get(header) if header else None
        return deployment.pick(routes, key)

    def route(self, request: Request) -> tuple[Deployment, Routes, Target]:
        """Take the deployment's routing snapshot and choose the version that answers.

        Raises
        ------
        NotFound
            When the model, or the version asked for, is not served here.
        """
        deployment = self._deployment(request)
        routes = deployment.routes
        assert routes is not None  # _deployment checked it
        return deployment, routes, self._target(request, deployment, routes)

    async def handle(
        self,
        request: Request,
        target: Target,
        parse: Callable[[bytes, Target, Request], InferRequest],
    ) -> tuple[InferRequest, list[Any], str]:
        """Read, validate and run one routed request (errors propagate as FedloopError)."""
        batcher = target.batcher
        batcher.pending += 1
        try:
            body = await read_body(request, self.max_body_bytes)
            parsed = parse(body, target, request)
        finally:
            batcher.pending -= 1
        outputs = await batcher.infer(parsed.feeds, parsed.rows)
        request_id = parsed.request_id or request.headers.get("x-request-id") or uuid.uuid4().hex
        return parsed, outputs, request_id

    def after(
        self,
        deployment: Deployment,
        routes: Routes,
        target: Target,
        parsed: InferRequest,
        outputs: list[Any],
        request_id: str,
    ) -> None:
        """Log the prediction (sampled) and mirror the request to the shadow, off the reply path."""
        logged = self.payload_log.enabled and self.payload_log.sample()
        runtime = target.runtime
        if logged:
            role = "primary" if target is routes.primary else "canary"
            _log_prediction(
                self.payload_log, deployment.name, runtime, role, request_id, parsed, outputs
            )
        shadow = routes.shadow
        if shadow is None or shadow is target:
            return
        name, version = deployment.name, shadow.runtime.version_text
        if not routes.shadow_compatible or len(self._shadow_tasks) >= _MAX_SHADOW_TASKS:
            self.metrics.observe_shadow(name, version, "skipped")
            return
        task = asyncio.get_running_loop().create_task(
            self._mirror(deployment, shadow, parsed, request_id, logged)
        )
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _mirror(
        self,
        deployment: Deployment,
        shadow: Target,
        parsed: InferRequest,
        request_id: str,
        log: bool,
    ) -> None:
        runtime = shadow.runtime
        try:
            outputs = await shadow.batcher.infer(parsed.feeds, parsed.rows)
        except Exception:  # the shadow's failure never reaches the caller
            self.metrics.observe_shadow(deployment.name, runtime.version_text, "failed")
            _log.exception("shadow %s v%s failed", deployment.name, runtime.version)
            return
        self.metrics.observe_shadow(deployment.name, runtime.version_text, "ok")
        if log:
            _log_prediction(
                self.payload_log, deployment.name, runtime, "shadow", request_id, parsed, outputs
            )

    def finish(
        self,
        request: Request,
        endpoint: str,
        started: float,
        status: int,
        *,
        model: str,
        version: str,
        request_id: str = "",
        rows: int = 0,
        error: FedloopError | None = None,
    ) -> None:
        """Record metrics and the access-log line of one answered request."""
        seconds = time.perf_counter() - started
        self.metrics.observe_request(model, version, endpoint, status, seconds)
        if error is not None:
            self.metrics.observe_error(model, error.code)
        if self.access_log and _access.isEnabledFor(logging.INFO):
            client = request.client
            line: dict[str, Any] = {
                "time": time.time(),
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "ms": round(seconds * 1000, 3),
                "model": model,
                "version": version,
                "rows": rows,
                "request_id": request_id,
                "client": client.host if client else None,
            }
            if error is not None:
                line["error"] = error.code
                line["field"] = error.field
            _access.info(dumps(line).decode())


def _log_prediction(
    log: PayloadLog,
    model: str,
    runtime: ModelRuntime,
    role: str,
    request_id: str,
    parsed: InferRequest,
    outputs: list[Any],
) -> None:
    """Offer one request's features and the version's answer to the payload log."""
    log.offer_prediction(
        model=model,
        version=runtime.version,
        role=role,
        request_id=request_id,
        features=parsed.feeds,
        prediction=dict(zip(runtime.output_names, outputs, strict=True)),
    )
