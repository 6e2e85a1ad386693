"""The control plane's credential routes: API keys and enrollment tokens (role ``admin``)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedloop.api.auth import Access, actor, guarded
from fedloop.core import CREDENTIAL_KINDS, CredentialKind, FedloopError, InvalidInput, Role
from fedloop.store import SqlMetadataStore

__all__ = ["credential_routes"]

_MAX_BODY_BYTES = 16 * 1024


class _NewCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: CredentialKind = "api"
    name: str = Field(min_length=1, max_length=200)
    role: Role | None = None


class _Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=1000)


async def _body(request: Request, model: type[BaseModel], example: str) -> Any:
    raw = await request.body()
    if len(raw) > _MAX_BODY_BYTES:
        raise InvalidInput(f"the body exceeds {_MAX_BODY_BYTES} bytes.", field="body")
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError as err:
        raise InvalidInput("the body is not JSON.", field="body", hint=f"Send {example}.") from err
    try:
        return model.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(
            f"`{field}`: {first['msg']}.", field=field, hint=f"Send {example}."
        ) from err


def _kind(request: Request) -> CredentialKind:
    kind = request.path_params["kind"]
    if kind not in CREDENTIAL_KINDS:
        raise InvalidInput(
            f"the credential kind must be one of {', '.join(CREDENTIAL_KINDS)}; got {kind!r}.",
            field="kind",
            value=kind,
            hint="Use /v1/credentials/api/NAME/revoke or /v1/credentials/client/ID/revoke.",
        )
    return kind  # type: ignore[no-any-return]


def credential_routes(metadata: SqlMetadataStore, access: Access | None) -> list[Route]:
    """Return the credential routes, each for role ``admin`` when keys are required.

    ``GET /v1/credentials`` (``?kind=api|client&all=1``: also revoked ones) lists them, never
    their tokens; ``POST /v1/credentials`` with ``{"kind": "api", "name", "role"}`` (or
    ``{"kind": "client", "name": CLIENT_ID}``) answers 201 with the record and the token,
    shown only this once; ``POST /v1/credentials/{kind}/{name}/revoke`` with an optional
    ``{"reason"}`` revokes it (running servers refuse it within their cache time). Each
    change is an audit event whose actor is the calling key.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The store holding the credentials.
    access : Access or None
        Who may call (None: anyone).

    Returns
    -------
    list of Route
        The routes.
    """

    async def list_all(request: Request) -> Response:
        try:
            kind = request.query_params.get("kind")
            if kind is not None and kind not in CREDENTIAL_KINDS:
                raise InvalidInput(
                    f"query parameter `kind` must be api or client; got {kind!r}.",
                    field="kind",
                    value=kind,
                )
            found = await run_in_threadpool(
                metadata.list_credentials,
                kind=kind,
                include_revoked=request.query_params.get("all") in ("1", "true"),
            )
        except FedloopError as err:
            return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)
        return JSONResponse({"credentials": [c.to_dict() for c in found]})

    async def create(request: Request) -> Response:
        try:
            new = await _body(
                request, _NewCredential, '{"kind": "api", "name": "ci", "role": "viewer"}'
            )
            credential, token = await run_in_threadpool(
                metadata.create_credential,
                new.kind,
                new.name,
                role=new.role,
                actor=actor(request),
            )
        except FedloopError as err:
            return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)
        return JSONResponse({"credential": credential.to_dict(), "token": token}, status_code=201)

    async def revoke(request: Request) -> Response:
        try:
            body = await _body(request, _Revocation, '{"reason": "..."} or nothing')
            credential = await run_in_threadpool(
                metadata.revoke_credential,
                _kind(request),
                request.path_params["name"],
                actor=actor(request),
                reason=body.reason,
            )
        except FedloopError as err:
            return JSONResponse({"error": err.to_dict()}, status_code=err.http_status)
        return JSONResponse(credential.to_dict())

    return [
        Route("/v1/credentials", guarded(access, "admin", list_all), methods=["GET"]),
        Route("/v1/credentials", guarded(access, "admin", create), methods=["POST"]),
        Route(
            "/v1/credentials/{kind}/{name}/revoke",
            guarded(access, "admin", revoke),
            methods=["POST"],
        ),
    ]
