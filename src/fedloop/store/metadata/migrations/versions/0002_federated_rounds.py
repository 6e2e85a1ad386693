"""Federated rounds: per-round checkpoints and per-client summaries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 03:44:16.585661
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "fl_client_rounds",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("num_examples", sa.BigInteger(), nullable=True),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_fl_client_rounds_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", "round", "client_id", name=op.f("pk_fl_client_rounds")),
    )
    with op.batch_alter_table("fl_client_rounds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fl_client_rounds_run_id_client_id"),
            ["run_id", "client_id"],
            unique=False,
        )

    op.create_table(
        "fl_rounds",
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("parameters_digest", sa.String(length=64), nullable=False),
        sa.Column("state_digest", sa.String(length=64), nullable=True),
        sa.Column("num_selected", sa.Integer(), nullable=False),
        sa.Column("num_succeeded", sa.Integer(), nullable=False),
        sa.Column("num_failed", sa.Integer(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_fl_rounds_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "round", name=op.f("pk_fl_rounds")),
    )


def downgrade() -> None:

    op.drop_table("fl_rounds")
    with op.batch_alter_table("fl_client_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fl_client_rounds_run_id_client_id"))

    op.drop_table("fl_client_rounds")
