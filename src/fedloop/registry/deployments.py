"""Desired traffic splits of served models (canary, shadow), kept in the store's deployments table."""

from __future__ import annotations

import logging
import math
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedloop.core import FedloopError, InvalidInput, NotFound
from fedloop.registry.aliases import parse_ref, resolve
from fedloop.store import SqlMetadataStore, check_name

__all__ = ["CanarySpec", "TrafficSpec", "clear_traffic", "find_traffic", "set_traffic"]

_log = logging.getLogger("fedloop.registry.deployments")

#: An HTTP header name (RFC 9110 token), as the sticky key of a canary split.
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
_STATUS_ACTIVE = "active"
_STATUS_CLEARED = "cleared"


class CanarySpec(BaseModel):
    """A weighted split of a served model's traffic onto a second version.

    Parameters
    ----------
    ref : str
        The canary version: ``NAME@ALIAS`` (followed as it moves), ``NAME:VERSION`` or ``NAME``.
    fraction : float
        Share of the requests sent to the canary, in [0, 1] (1 sends them all).
    sticky_header : str or None, default None
        A request header whose value pins a caller to one side of the split.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str = Field(min_length=1, max_length=400)
    fraction: float = Field(ge=0, le=1, allow_inf_nan=False)
    sticky_header: str | None = Field(default=None, pattern=_HEADER.pattern)


class TrafficSpec(BaseModel):
    """The desired traffic split of one served model, as the controller sets it.

    A spec with neither a canary nor a shadow is *cleared*: the server falls back to the split
    of its own configuration (``[serving.canary.NAME]``, ``[serving.shadow]``).

    Parameters
    ----------
    canary : CanarySpec or None, default None
        The weighted canary, if any.
    shadow : str or None, default None
        Reference of a version that gets a copy of every request (answer logged, never returned).
    reason : str, default ""
        Why the split was set (also in the ``deployment.changed`` audit event).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    canary: CanarySpec | None = None
    shadow: str | None = Field(default=None, min_length=1, max_length=400)
    reason: str = Field(default="", max_length=10_000)

    @property
    def cleared(self) -> bool:
        """True when the spec sets neither a canary nor a shadow (the config's split applies)."""
        return self.canary is None and self.shadow is None


def _check_ref(model: str, text: str, *, field: str) -> None:
    """Refuse a reference that does not parse or names another model (no store access)."""
    try:
        ref = parse_ref(text)
    except InvalidInput as err:
        raise InvalidInput(
            f"`{field}` must be a model reference; {err.message}",
            field=field,
            value=text,
            hint=err.hint,
        ) from err
    if ref.name != model:
        raise InvalidInput(
            f"`{field}` must be a version of {model!r}; got {text!r}.",
            field=field,
            value=text,
            hint=f"Write {model}:VERSION or {model}@ALIAS.",
        )


def _check_exists(metadata: SqlMetadataStore, text: str, *, field: str) -> None:
    try:
        resolve(metadata, text)
    except NotFound as err:
        raise NotFound(
            f"`{field}` {text!r} does not resolve: {err.message}",
            field=field,
            value=text,
            hint=err.hint or "Register the version or set the alias first.",
        ) from err


def _check_fraction(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise InvalidInput(
            f"`canary_fraction` must be a number in [0, 1]; got {value!r}.",
            field="canary_fraction",
            value=value,
            hint="Pass e.g. 0.1 for 10% of the traffic; 0 stops the canary's traffic.",
        )
    return float(value)


def _check_text(value: object, *, field: str, max_chars: int) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise InvalidInput(
            f"`{field}` must be text of at most {max_chars} characters; got {value!r:.80}.",
            field=field,
            hint=f"Shorten `{field}`.",
        )
    return value


def _check_spec(model: str, spec: TrafficSpec) -> None:
    if spec.canary is not None:
        _check_ref(model, spec.canary.ref, field="canary_ref")
    if spec.shadow is not None:
        _check_ref(model, spec.shadow, field="shadow_ref")


def set_traffic(
    metadata: SqlMetadataStore,
    model: str,
    *,
    canary_ref: str | None = None,
    canary_fraction: float = 0.0,
    sticky_header: str | None = None,
    shadow_ref: str | None = None,
    actor: str = "system",
    reason: str = "",
) -> TrafficSpec:
    """Record the desired traffic split of a served model; running servers follow it.

    The split replaces the server configuration's canary and shadow of ``model`` as a whole (a
    spec with a canary and no shadow means no shadow) until :func:`clear_traffic`. Every
    reference is checked against the registry before anything is written; the record and its
    ``deployment.changed`` audit event commit together.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The metadata store.
    model : str
        The served model name (also the deployment's name).
    canary_ref : str or None, default None
        The canary version (``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME``) of ``model``.
    canary_fraction : float, default 0.0
        Share of the requests the canary answers, in [0, 1]; 0 keeps it loaded without traffic.
    sticky_header : str or None, default None
        A request header whose value pins a caller to one side of the split.
    shadow_ref : str or None, default None
        A version of ``model`` that gets a copy of every request.
    actor, reason : str
        Recorded with the spec and in the audit log.

    Returns
    -------
    TrafficSpec
        The recorded spec.

    Raises
    ------
    InvalidInput
        Naming the field (``canary_ref``, ``canary_fraction``, ``sticky_header``,
        ``shadow_ref``, ``reason``, ``actor``) that is malformed, of another model or out of
        range; nothing is written.
    NotFound
        When the model, or the version or alias a reference names, does not exist (the field
        says which); nothing is written.
    Conflict
        When a deployment named ``model`` serves another model.

    Example
    -------
    >>> set_traffic(ws.metadata, "fraud", canary_ref="fraud:4", canary_fraction=0.1)  # doctest: +SKIP
    >>> set_traffic(ws.metadata, "fraud", canary_ref="fraud:4", canary_fraction=0.5)
    >>> promote(ws.metadata, "fraud", 4)
    >>> clear_traffic(ws.metadata, "fraud", reason="fraud:4 promoted")
    """
    check_name(model, field="model")
    fraction = _check_fraction(canary_fraction)
    _check_text(reason, field="reason", max_chars=10_000)
    _check_text(actor, field="actor", max_chars=200)
    if canary_ref is None and fraction > 0.0:
        raise InvalidInput(
            f"`canary_fraction` is {fraction} but no `canary_ref` names the canary.",
            field="canary_fraction",
            value=fraction,
            hint="Pass canary_ref=NAME:VERSION, or leave canary_fraction at 0.",
        )
    if sticky_header is not None:
        if canary_ref is None:
            raise InvalidInput(
                "`sticky_header` needs a canary to split on; no `canary_ref` was given.",
                field="sticky_header",
                value=sticky_header,
            )
        if not isinstance(sticky_header, str) or not _HEADER.match(sticky_header):
            raise InvalidInput(
                f"`sticky_header` must be an HTTP header name; got {sticky_header!r}.",
                field="sticky_header",
                value=sticky_header,
                hint="Use e.g. x-user-id.",
            )
    refs = [("canary_ref", canary_ref), ("shadow_ref", shadow_ref)]
    for field, text in refs:
        if text is not None:
            _check_ref(model, _check_text(text, field=field, max_chars=400), field=field)
    metadata.list_model_versions(model)  # NotFound (field "model") for an unknown model
    for field, text in refs:
        if text is not None:
            _check_exists(metadata, text, field=field)
    spec = TrafficSpec(
        canary=None
        if canary_ref is None
        else CanarySpec(ref=canary_ref, fraction=fraction, sticky_header=sticky_header),
        shadow=shadow_ref,
        reason=reason,
    )
    return _put(metadata, model, spec, actor=actor)


def clear_traffic(
    metadata: SqlMetadataStore, model: str, *, actor: str = "system", reason: str = ""
) -> TrafficSpec:
    """Clear a served model's desired split: servers go back to their configuration's split.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The metadata store.
    model : str
        The served model name.
    actor, reason : str
        Recorded with the spec and in the audit log.

    Returns
    -------
    TrafficSpec
        The recorded, cleared spec.

    Raises
    ------
    InvalidInput
        When ``model``, ``actor`` or ``reason`` is malformed.
    NotFound
        When the model does not exist.
    """
    check_name(model, field="model")
    _check_text(reason, field="reason", max_chars=10_000)
    _check_text(actor, field="actor", max_chars=200)
    return _put(metadata, model, TrafficSpec(reason=reason), actor=actor)


def _put(metadata: SqlMetadataStore, model: str, spec: TrafficSpec, *, actor: str) -> TrafficSpec:
    status = _STATUS_CLEARED if spec.cleared else _STATUS_ACTIVE
    metadata.put_deployment(model, model, spec.model_dump(mode="json"), status=status, actor=actor)
    return spec


def find_traffic(metadata: SqlMetadataStore, model: str) -> TrafficSpec | None:
    """Return the desired split of a served model, or None when there is none to follow.

    A record that cannot be read as a :class:`TrafficSpec` of ``model`` (written by hand or by a
    newer fedloop) is logged and treated as absent, so that a server keeps running.

    Parameters
    ----------
    metadata : SqlMetadataStore
        The metadata store.
    model : str
        The served model name.

    Returns
    -------
    TrafficSpec or None
        The spec (possibly cleared), or None when no usable record exists.

    Raises
    ------
    StoreUnavailable
        When the store cannot be read.
    """
    try:
        record = metadata.get_deployment(model)
    except NotFound:
        return None
    try:
        if record.model_name != model:
            raise InvalidInput(
                f"deployment {model!r} serves model {record.model_name!r}.", field="model_name"
            )
        spec = TrafficSpec.model_validate(record.spec)
        _check_spec(model, spec)
    except (ValidationError, FedloopError) as err:
        _log.warning(
            "ignoring the traffic spec of %s (updated %s): %s", model, record.updated_at, err
        )
        return None
    return spec
