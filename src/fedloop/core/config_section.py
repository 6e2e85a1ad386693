"""The base of every fedloop.toml section model: frozen, and unknown keys are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """A fedloop.toml section: immutable once built; a key it does not define is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")
