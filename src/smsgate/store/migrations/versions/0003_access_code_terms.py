"""access code terms: the period of a first-use code, and codes by service and time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("period_seconds", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_access_codes_service_id_issued_at", ["service_id", "issued_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("access_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_access_codes_service_id_issued_at")
        batch_op.drop_column("period_seconds")
