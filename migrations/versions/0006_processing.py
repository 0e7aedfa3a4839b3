"""declared pre- and post-processing of a version, and the parent of a derived version

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 21:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("preprocess", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("postprocess", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("derived_from", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("derived_from")
        batch.drop_column("postprocess")
        batch.drop_column("preprocess")
