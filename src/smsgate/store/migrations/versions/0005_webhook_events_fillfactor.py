"""webhook events: room left in each page, so that recording a delivery is a HOT update

Each event row is written once and updated once or twice (its attempts, status and delivery
time), none of them indexed columns. With full pages the updated row lands on another page and
every index of the table (the key, the merchant's, the service's) gets a new entry; with room
left on the page PostgreSQL updates it in place (HOT), touching no index. PostgreSQL only;
nothing to do on SQLite.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE webhook_events SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_events RESET (fillfactor)")
