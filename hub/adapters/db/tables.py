"""The schema as SQLAlchemy Core tables: the single source the Alembic migrations are checked against.

Core, not the ORM: the store writes in batches with executemany, and the ORM's unit of work would
cost ~2x the client CPU per row for nothing we need (see /work/shared/design/perf-limits.md).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.adapters.db.types import UtcDateTime

# Explicit constraint names, so SQLite and PostgreSQL get the same names and a migration can
# refer to them later (SQLite cannot alter an unnamed constraint).
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_CODE = 16  # party codes: 4-digit gemeente, 8-digit AGB, or a fixed code such as VWSPGB
_ID = 64  # message and conversation ids (uuids), request ids, identificaties

berichten = Table(
    "berichten",
    metadata,
    Column("message_id", String(_ID), primary_key=True),
    Column("conversation_id", String(_ID), nullable=False),
    Column("standaard", String(16), nullable=False),
    Column("release", String(16), nullable=False),
    Column("berichttype", String(16), nullable=False),
    Column("berichtcode", String(8), nullable=False),
    Column("afzender_kind", String(16), nullable=False),
    Column("afzender_code", String(_CODE), nullable=False),
    Column("ontvanger", String(_CODE), nullable=False),  # the header's code, as written
    Column("receiver_kind", String(16), nullable=False),
    Column("receiver_code", String(_CODE), nullable=False),
    Column("identificatie", String(_ID), nullable=False),
    Column("dagtekening", Date, nullable=False),
    Column("answers_message_id", String(_ID), nullable=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("request_id", String(_ID), nullable=False),
    Column("routing_version", String(_ID), nullable=False),
    # Delivery and conversations (migration 0002).
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(300), nullable=True),
    Column("answer_due", Date, nullable=True),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("retourcodes", String(200), nullable=True),  # space-separated codes (they are 4 digits)
    Column("body_purged_at", UtcDateTime, nullable=True),
    # The identity of a message (TR056): sender + Identificatie + Dagtekening, per message type,
    # because a retour carries its own IdentificatieRetour in the same number space as the heen.
    UniqueConstraint(
        "afzender_kind",
        "afzender_code",
        "berichttype",
        "identificatie",
        "dagtekening",
        name="uq_berichten_identity",  # the generated name would pass PostgreSQL's 63-byte limit
    ),
)
# find_answered looks a heenbericht up by the code of its sender only (the retour names it by code).
Index(
    "ix_berichten_answered",
    berichten.c.berichttype,
    berichten.c.afzender_code,
    berichten.c.identificatie,
    berichten.c.dagtekening,
)
Index(None, berichten.c.conversation_id)
# unforwarded(): status + age.
Index(None, berichten.c.status, berichten.c.received_at)
# The mailbox, the backlog per receiver and the worker's queue discovery.
Index(
    "ix_berichten_receiver_status",
    berichten.c.receiver_kind,
    berichten.c.receiver_code,
    berichten.c.status,
    berichten.c.received_at,
)
# Overdue answers: heenberichten with a due date and no answer yet.
Index("ix_berichten_answer_due", berichten.c.answer_due, berichten.c.answered_at)
# Retention: delivered messages by age.
Index("ix_berichten_delivered_at", berichten.c.delivered_at)

# Separate from the metadata so a retention job can delete bodies (the only place a BSN can be)
# while the audit trail stays.
bericht_bodies = Table(
    "bericht_bodies",
    metadata,
    Column(
        "message_id",
        String(_ID),
        ForeignKey("berichten.message_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("body", LargeBinary, nullable=False),
    # The id of the HUB_BODY_KEYS key the body is encrypted with; NULL: stored as sent (migration 0003).
    Column("key_id", String(32), nullable=True),
)

# Append-only: the code has no UPDATE or DELETE on this table. No foreign key to berichten on purpose:
# the trail must outlive any retention of message rows.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(_ID), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
    # Also the index for events(message_id); the unique seq makes two writers that race on the same
    # message fail loudly instead of writing the same seq twice.
    UniqueConstraint("message_id", "seq"),
)

# Refused requests. Deliberately no body and nothing from inside the message (no BSN).
weigeringen = Table(
    "weigeringen",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(_ID), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("code", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("afzender_kind", String(16), nullable=True),
    Column("afzender_code", String(_CODE), nullable=True),
    Column("standaard", String(16), nullable=True),
    Column("berichttype", String(16), nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("path", String(200), nullable=True),  # "METHOD /path" of the refused request (migration 0003)
)

# Parties registered at run time (aanbieders, mostly; gemeenten and the national bodies are known
# from the routing files as well).
parties = Table(
    "parties",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("code", String(_CODE), nullable=False),
    Column("naam", String(200), nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    UniqueConstraint("kind", "code"),
)

# API tokens. Only the sha256 of a token is stored. No foreign key to parties: tokens may belong
# to a gemeente or a national body that has no row there.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("party_kind", String(16), nullable=False),
    Column("party_code", String(_CODE), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "party_kind", "party_code"),
)
