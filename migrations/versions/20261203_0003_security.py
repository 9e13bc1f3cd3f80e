"""Security: the key id of an encrypted body, and the path of a refused request.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: every body stored so far is plaintext (key_id NULL), and `hub keys rotate`
    # encrypts those too.
    with op.batch_alter_table("bericht_bodies") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    with op.batch_alter_table("weigeringen") as batch:
        batch.add_column(sa.Column("path", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("weigeringen") as batch:
        batch.drop_column("path")
    with op.batch_alter_table("bericht_bodies") as batch:
        batch.drop_column("key_id")
