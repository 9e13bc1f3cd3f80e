"""Delivery and conversations: delivery state, attempts, answer deadlines, retourcodes, retention.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("berichten") as batch:
        batch.add_column(sa.Column("delivered_at", _utc(), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.String(300), nullable=True))
        batch.add_column(sa.Column("answer_due", sa.Date(), nullable=True))
        batch.add_column(sa.Column("answered_at", _utc(), nullable=True))
        batch.add_column(sa.Column("retourcodes", sa.String(200), nullable=True))
        batch.add_column(sa.Column("body_purged_at", _utc(), nullable=True))
    op.create_index(
        "ix_berichten_receiver_status",
        "berichten",
        ["receiver_kind", "receiver_code", "status", "received_at"],
    )
    op.create_index("ix_berichten_answer_due", "berichten", ["answer_due", "answered_at"])
    op.create_index("ix_berichten_delivered_at", "berichten", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_berichten_delivered_at", "berichten")
    op.drop_index("ix_berichten_answer_due", "berichten")
    op.drop_index("ix_berichten_receiver_status", "berichten")
    with op.batch_alter_table("berichten") as batch:
        for column in (
            "body_purged_at", "retourcodes", "answered_at", "answer_due", "last_error", "attempts", "delivered_at"
        ):
            batch.drop_column(column)
