"""receipt look-ups: the operator's message id first in the two indexes that find them

Receipts are matched in batches: the parts (and the stored, unmatched receipts) of one
operator whose message ids are in a list of up to 500. With the operator id first in the
index, PostgreSQL may, when its statistics lag behind a fast-growing table, use the index for
the operator alone and filter the ids from the table, reading every part of that operator:
the cost of a batch then grows with the table (seen at 30-190 ms per batch with a backlog of
100,000 messages). With the message id first, the list is the index's own condition.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 07:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (("mt_parts", "ix_mt_parts"), ("delivery_reports", "ix_delivery_reports"))


def upgrade() -> None:
    for table, prefix in _INDEXES:
        op.drop_index(f"{prefix}_operator_id_operator_message_id", table_name=table)
        op.create_index(
            f"{prefix}_operator_message_id_operator_id",
            table,
            ["operator_message_id", "operator_id"],
        )


def downgrade() -> None:
    for table, prefix in _INDEXES:
        op.drop_index(f"{prefix}_operator_message_id_operator_id", table_name=table)
        op.create_index(
            f"{prefix}_operator_id_operator_message_id",
            table,
            ["operator_id", "operator_message_id"],
        )
