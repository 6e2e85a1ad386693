"""Monitoring: reference profiles of model versions and checked monitor windows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_profiles",
        sa.Column("model_version_id", sa.String(length=32), nullable=False),
        sa.Column("profile_digest", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("num_rows", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_profiles_model_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model_version_id", name=op.f("pk_model_profiles")),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=True),
        sa.Column(
            "summary",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["registered_models.name"],
            name=op.f("fk_monitor_windows_model_name_registered_models"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_windows")),
    )
    with op.batch_alter_table("monitor_windows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_monitor_windows_model_name_version_kind_end_time"),
            ["model_name", "version", "kind", "end_time"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("monitor_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_monitor_windows_model_name_version_kind_end_time"))
    op.drop_table("monitor_windows")
    op.drop_table("model_profiles")
