"""The [distributed] section of fedloop.toml: data-parallel training across worker processes."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fedloop.core.config_sources import FieldCheckError

__all__ = ["MAX_WORKERS", "DistributedConfig"]

#: Most worker processes one launch may start (per node for the elastic launcher).
MAX_WORKERS = 1024

# host:port, host a name, an IPv4 address or a bracketed IPv6 address; port 0 picks a free one.
_ENDPOINT_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9_.\-]{0,252}):[0-9]{1,5}$"


class DistributedConfig(BaseModel):
    """How ``fedloop train`` runs data-parallel training (PyTorch DDP).

    Parameters
    ----------
    workers : int, default 1
        Worker processes, one DDP rank each, in [1, 1024]. On a small CPU-only machine one
        process is usually fastest (a tiny model is communication-bound).
    launcher : {"elastic", "ray"}, default "elastic"
        ``elastic``: torch.distributed elastic agent on this machine; ``ray``: Ray Train on a
        cluster (extra ``ray``).
    backend : {"auto", "gloo", "nccl"}, default "auto"
        Process-group backend; ``auto`` is nccl when every worker gets a GPU, else gloo.
    checkpoint_every_steps : int, default 200
        Rank 0 checkpoints model, optimizer and data position to the artifact store every this
        many optimizer steps; a restarted group loses at most this much work.
    max_restarts : int, default 3
        Times the group is restarted from its last checkpoint after a worker fails.
    rendezvous : str, default "127.0.0.1:0"
        ``host:port`` of the c10d rendezvous; port 0 picks a free port on this machine.
    rendezvous_timeout_s : float, default 60
        Longest wait for the rendezvous (an unreachable endpoint fails after this).
    ray_address : str or None, default None
        Ray cluster to join with ``launcher = "ray"`` (``auto``, ``ray://host:10001``); None
        starts a local Ray.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(default=1, ge=1, le=MAX_WORKERS, description="Worker processes.")
    launcher: Literal["elastic", "ray"] = Field(default="elastic", description="Who launches.")
    backend: Literal["auto", "gloo", "nccl"] = Field(default="auto", description="DDP backend.")
    checkpoint_every_steps: int = Field(
        default=200, ge=1, le=100_000_000, description="Optimizer steps between checkpoints."
    )
    max_restarts: int = Field(default=3, ge=0, le=1_000, description="Group restarts allowed.")
    rendezvous: str = Field(
        default="127.0.0.1:0", pattern=_ENDPOINT_PATTERN, description="c10d host:port."
    )
    rendezvous_timeout_s: float = Field(
        default=60.0, gt=0, le=86_400, description="Longest wait for the rendezvous."
    )
    ray_address: str | None = Field(
        default=None, min_length=1, max_length=500, description="Ray cluster address."
    )

    @field_validator("rendezvous")
    @classmethod
    def _check_port(cls, value: str) -> str:
        if int(value.rsplit(":", 1)[1]) > 65_535:
            raise ValueError("the port must be in [0, 65535] (0 picks a free port)")
        return value

    @model_validator(mode="after")
    def _ray_address_needs_ray(self) -> Self:
        if self.ray_address is not None and self.launcher != "ray":
            raise FieldCheckError(
                "is only used with launcher = 'ray'; set launcher = 'ray' or remove it",
                loc=("ray_address",),
                value=self.ray_address,
            )
        return self

    @property
    def rendezvous_port(self) -> int:
        """Return the port of ``rendezvous`` (0: pick a free one)."""
        return int(self.rendezvous.rsplit(":", 1)[1])

    @property
    def rendezvous_host(self) -> str:
        """Return the host of ``rendezvous`` (IPv6 without brackets)."""
        return self.rendezvous.rsplit(":", 1)[0].strip("[]")
