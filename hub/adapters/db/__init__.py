"""The SQL database adapter: audit trail, message store and party registry (SQLite or PostgreSQL)."""

from hub.adapters.db.audit_store import SqlAlchemyAuditStore, create_audit_store
from hub.adapters.db.audit_writes import UnknownMessage
from hub.adapters.db.party_store import SqlAlchemyPartyStore, create_party_store

__all__ = [
    "SqlAlchemyAuditStore",
    "SqlAlchemyPartyStore",
    "UnknownMessage",
    "create_audit_store",
    "create_party_store",
]
