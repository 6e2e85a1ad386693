"""The closed loop: one row per triggered action of a policy, with its state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loop_actions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.String(length=200), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("trigger_kind", sa.String(length=20), nullable=False),
        sa.Column("trigger_ref", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("challenger_version", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_name"],
            ["registered_models.name"],
            name=op.f("fk_loop_actions_model_name_registered_models"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loop_actions")),
        sa.UniqueConstraint(
            "policy", "trigger_ref", name=op.f("uq_loop_actions_policy_trigger_ref")
        ),
    )
    with op.batch_alter_table("loop_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_loop_actions_policy_state"), ["policy", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("loop_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loop_actions_policy_state"))
    op.drop_table("loop_actions")
