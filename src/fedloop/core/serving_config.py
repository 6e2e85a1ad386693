"""The [serving] section of fedloop.toml: served models, canary and shadow, batching, the payload log."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from fedloop.core.api_config import SecretText
from fedloop.core.config_section import Section

__all__ = ["BatchingConfig", "CanaryConfig", "PayloadLogConfig", "ServingConfig"]


_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,199}([@:/][^@:/]+)?$"


class BatchingConfig(Section):
    """Adaptive batching of concurrent inference requests.

    Parameters
    ----------
    enabled : bool, default True
        Coalesce concurrent requests into one onnxruntime call.
    max_batch_size : int, default 256
        Most rows one onnxruntime call takes (a single bigger request still runs alone).
    max_wait_ms : float, default 2.0
        Longest a request waits for others that are known to be on their way.
    """

    enabled: bool = True
    max_batch_size: int = Field(default=256, ge=1, le=1_000_000)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1_000)


class PayloadLogConfig(Section):
    """Where sampled (request, prediction) records and late labels are sent.

    Parameters
    ----------
    url : str or None, default None
        The monitor's ingest URL, e.g. ``http://127.0.0.1:8500/v1/monitor/ingest`` (HTTP POST
        of ``{"predictions": [...], "feedback": [...]}``); None turns the log off.
    fraction_sampled : float, default 1.0
        Fraction of requests logged, in [0, 1].
    queue_size : int, default 10000
        Records held while the monitor is slow; further records are dropped (and counted).
    max_records_per_post : int, default 500
        Pending records that trigger a POST before ``flush_interval_s`` is up.
    timeout_s : float, default 2.0
        Timeout of one POST to the monitor.
    flush_interval_s : float, default 0.2
        Longest a record waits before it is sent.
    api_key : str or None, default None
        API key (role ``client`` or above) sent as ``Authorization: Bearer`` when the monitor
        asks for one (``[api] auth``); set it with ``FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY``
        rather than in a file. ``fedloop up`` gives its own server a key itself.
    """

    url: str | None = Field(default=None, pattern=r"^https?://")
    fraction_sampled: float = Field(default=1.0, ge=0, le=1)
    queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    max_records_per_post: int = Field(default=500, ge=1, le=100_000)
    timeout_s: float = Field(default=2.0, gt=0, le=300)
    flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    api_key: SecretText | None = None


class CanaryConfig(Section):
    """A weighted split of one served model's traffic onto a second version.

    Parameters
    ----------
    ref : str
        The canary version: ``NAME@ALIAS`` (followed when it moves) or ``NAME:VERSION``.
    fraction : float
        Fraction of requests sent to the canary, in [0, 1].
    sticky_header : str or None, default None
        A request header (e.g. ``x-user-id``) whose value pins a caller to one side of the split.
    """

    ref: str = Field(pattern=_REF_PATTERN)
    fraction: float = Field(ge=0, le=1)
    sticky_header: str | None = Field(default=None, min_length=1, max_length=100)


class ServingConfig(Section):
    """The inference server (``fedloop serve``).

    Parameters
    ----------
    host : str, default "127.0.0.1"
        Interface to listen on.
    port : int, default 8080
        TCP port (0 picks a free one).
    workers : int, default 1
        Worker processes sharing the port.
    models : tuple of str, default ("fraud-fl@champion",)
        Model references served, each at ``/v2/models/<NAME>``; aliases are followed when they move.
    canary : dict, default {}
        Per served model name, a :class:`CanaryConfig`.
    shadow : dict, default {}
        Per served model name, the reference of a challenger that gets a copy of every request
        (its answer is logged, never returned).
    max_body_bytes : int, default 8 MiB
        Larger request bodies are refused with 413.
    alias_poll_s : float, default 2.0
        How often the registry is asked whether a served alias moved or the stored traffic
        split (canary, shadow) changed; 0 turns watching off (both are read at start only).
    intra_op_threads : int, default 1
        onnxruntime threads per model version.
    access_log : bool, default False
        One structured (JSON) log line per request on the ``fedloop.serving.access`` logger.
    batching : BatchingConfig
        Adaptive batching.
    payload_log : PayloadLogConfig
        The sampled stream of predictions to the monitor.
    """

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65_535)
    workers: int = Field(default=1, ge=1, le=256)
    models: tuple[str, ...] = Field(default=("fraud-fl@champion",), min_length=1)
    canary: dict[str, CanaryConfig] = Field(default_factory=dict)
    shadow: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=2**31)
    alias_poll_s: float = Field(default=2.0, ge=0, le=3_600)
    intra_op_threads: int = Field(default=1, ge=0, le=256)
    access_log: bool = False
    batching: BatchingConfig = BatchingConfig()
    payload_log: PayloadLogConfig = PayloadLogConfig()

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        # The environment can only hold strings: FEDLOOP_SERVING__MODELS="a@champion,b@champion".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names: set[str] = set()
        for ref in value:
            if not re.fullmatch(_REF_PATTERN, ref):
                raise ValueError(
                    f"each model must be NAME@ALIAS, NAME:VERSION or NAME; got {ref!r}"
                )
            name = re.split(r"[@:/]", ref, maxsplit=1)[0]
            if name in names:
                raise ValueError(f"model {name!r} is listed twice; serve each name once")
            names.add(name)
        return value

    @field_validator("shadow")
    @classmethod
    def _check_shadow(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not re.fullmatch(_REF_PATTERN, ref):
                raise ValueError(f"shadow of {name!r} must be a model reference; got {ref!r}")
        return value

    def served_names(self) -> tuple[str, ...]:
        """Return the model names served (the NAME part of each reference).

        Returns
        -------
        tuple of str
            One name per entry of ``models``.
        """
        return tuple(re.split(r"[@:/]", ref, maxsplit=1)[0] for ref in self.models)
