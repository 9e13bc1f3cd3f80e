"""Initial schema: berichten, bericht_bodies, audit_events, weigeringen, parties, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-12-03

Plain SQLAlchemy types only (no imports from hub): a migration must keep meaning what it meant
when it was written, whatever the models become later. UtcDateTime is DateTime(timezone=True).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "berichten",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("standaard", sa.String(16), nullable=False),
        sa.Column("release", sa.String(16), nullable=False),
        sa.Column("berichttype", sa.String(16), nullable=False),
        sa.Column("berichtcode", sa.String(8), nullable=False),
        sa.Column("afzender_kind", sa.String(16), nullable=False),
        sa.Column("afzender_code", sa.String(16), nullable=False),
        sa.Column("ontvanger", sa.String(16), nullable=False),
        sa.Column("receiver_kind", sa.String(16), nullable=False),
        sa.Column("receiver_code", sa.String(16), nullable=False),
        sa.Column("identificatie", sa.String(64), nullable=False),
        sa.Column("dagtekening", sa.Date(), nullable=False),
        sa.Column("answers_message_id", sa.String(64), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("routing_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_berichten"),
        sa.UniqueConstraint(
            "afzender_kind",
            "afzender_code",
            "berichttype",
            "identificatie",
            "dagtekening",
            name="uq_berichten_identity",
        ),
    )
    op.create_index(
        "ix_berichten_answered",
        "berichten",
        ["berichttype", "afzender_code", "identificatie", "dagtekening"],
    )
    op.create_index("ix_berichten_conversation_id", "berichten", ["conversation_id"])
    op.create_index("ix_berichten_status_received_at", "berichten", ["status", "received_at"])

    op.create_table(
        "bericht_bodies",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["berichten.message_id"],
            name="fk_bericht_bodies_message_id_berichten",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name="pk_bericht_bodies"),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.UniqueConstraint("message_id", "seq", name="uq_audit_events_message_id_seq"),
    )

    op.create_table(
        "weigeringen",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("afzender_kind", sa.String(16), nullable=True),
        sa.Column("afzender_code", sa.String(16), nullable=True),
        sa.Column("standaard", sa.String(16), nullable=True),
        sa.Column("berichttype", sa.String(16), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_weigeringen"),
    )
    op.create_index("ix_weigeringen_request_id", "weigeringen", ["request_id"])
    op.create_index("ix_weigeringen_at", "weigeringen", ["at"])

    op.create_table(
        "parties",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("naam", sa.String(200), nullable=False),
        sa.Column("registered_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_parties"),
        sa.UniqueConstraint("kind", "code", name="uq_parties_kind_code"),
    )

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("party_kind", sa.String(16), nullable=False),
        sa.Column("party_code", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_tokens_token_sha256"),
    )
    op.create_index("ix_tokens_party_kind_party_code", "tokens", ["party_kind", "party_code"])


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("parties")
    op.drop_table("weigeringen")
    op.drop_table("audit_events")
    op.drop_table("bericht_bodies")
    op.drop_table("berichten")
