"""The error family: one machine-readable code per way a message can be refused.

The gateway maps each to an HTTP status (hub/entrypoints/http_errors.py); docs/api.md lists them.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # The document itself (validation)
    NOT_WELL_FORMED = "not_well_formed"  # not XML, or broken XML
    HOSTILE_XML = "hostile_xml"  # DTD, entities, too deep, too many nodes ...
    TOO_LARGE = "too_large"  # over the size limit
    UNKNOWN_MESSAGE = "unknown_message"  # root namespace names no message the hub knows
    RELEASE_NOT_ACCEPTED = "release_not_accepted"  # known release, outside its acceptance window
    HEADER_MISMATCH = "header_mismatch"  # BerichtCode/Versie/Subversie disagree with the namespace
    SCHEMA_INVALID = "schema_invalid"  # fails its XSD
    # The request (gateway)
    BAD_REQUEST = "bad_request"  # a malformed query or JSON body (not the message itself)
    REQUEST_TIMEOUT = "request_timeout"  # the body did not arrive within HUB_BODY_READ_TIMEOUT
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    AFZENDER_MISMATCH = "afzender_mismatch"  # header's sender is not the authenticated party
    # Routing
    UNKNOWN_RECEIVER = "unknown_receiver"
    ROUTE_NOT_ALLOWED = "route_not_allowed"  # this sender kind may not send this type to that kind
    UNKNOWN_CONVERSATION = "unknown_conversation"  # a retour/antwoord for a message the hub never saw
    IDENTIFICATIE_REUSED = "identificatie_reused"  # same identity, different content
    # Availability
    UNAVAILABLE = "unavailable"  # broker or database down, or too much in flight: retry later
    RATE_LIMITED = "rate_limited"  # the party sends faster or more at once than its limit: retry later
    NOT_FOUND = "not_found"


class HubError(Exception):
    """A refusal with a code; `detail` is safe to show to the sender (no BSN, no body)."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
