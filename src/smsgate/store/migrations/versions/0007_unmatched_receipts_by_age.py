"""receipts waiting for their part: the index on mt_part_id extended by received_at

A receipt can be stored before its part's operator message id is written (the HTTP intake,
another process's link). The worker sweeps those received recently whose part now exists
(services/dlr_sweep.py) every half second: ``mt_part_id IS NULL AND received_at >= since``.
With the index on mt_part_id alone, both databases read every unmatched receipt ever stored
and filtered the old ones (receipts of messages never sent stay unmatched for good), even
beside a partial index of the unmatched ones by age, which neither chose. With received_at
second in the index, the window's start is part of the index's condition; look-ups by part
use the first column as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_delivery_reports_mt_part_id_received_at",
        "delivery_reports",
        ["mt_part_id", "received_at"],
    )
    op.drop_index("ix_delivery_reports_mt_part_id", table_name="delivery_reports")


def downgrade() -> None:
    op.create_index("ix_delivery_reports_mt_part_id", "delivery_reports", ["mt_part_id"])
    op.drop_index("ix_delivery_reports_mt_part_id_received_at", table_name="delivery_reports")
