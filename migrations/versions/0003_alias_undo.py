"""alias history rows name the change a rollback undid (rollback as an undo stack)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 16:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alias_history") as batch:
        batch.add_column(sa.Column("undoes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alias_history") as batch:
        batch.drop_column("undoes")
