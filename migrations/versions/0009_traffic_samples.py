"""traffic_samples: what each gateway answered per model and report period, kept for minutes,
for the console's live charts

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reporter", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traffic_samples")),
    )
    op.create_index("ix_traffic_samples_model_at", "traffic_samples", ["model", "at"])
    op.create_index(op.f("ix_traffic_samples_at"), "traffic_samples", ["at"])


def downgrade() -> None:
    op.drop_table("traffic_samples")
