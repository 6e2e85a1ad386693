"""Alembic migrations of the metadata schema."""

__all__: list[str] = []
