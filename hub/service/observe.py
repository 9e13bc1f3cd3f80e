"""Observers: what the service layer reports about its work, for metrics (docs/operations.md).

The service layer calls these; `hub/adapters/metrics.py` implements them with prometheus_client and
the Null ones do nothing (the default, so the intake and tests need no metrics). Every argument is a
low-cardinality value: a standard, a message type, an error code, a party kind, a channel; never a
BSN, a message id or a party code.
"""

from __future__ import annotations

from typing import Protocol

from hub.domain.errors import ErrorCode


class IntakeObserver(Protocol):
    def received(self) -> None:
        """A POST /v1/berichten arrived (before anything about it is known)."""
        ...

    def refused(self, code: ErrorCode, standard: str | None, message: str | None) -> None:
        """The message was refused; standard and message type when they could be read."""
        ...

    def unavailable(self, what: str) -> None:
        """Answered 503: `what` is "database" or "broker"."""
        ...

    def validated(self, standard: str | None, message: str | None, seconds: float, valid: bool) -> None: ...

    def accepted(self, standard: str, message: str, receiver_kind: str, duplicate: bool) -> None:
        """Answered 202 (new, or the sender's retry of a not yet forwarded one) or 200 duplicate."""
        ...

    def acceptance(self, seconds: float) -> None:
        """From the start of the intake to the committed `forwarded` status (a 202)."""
        ...

    def published(self, ok: bool) -> None:
        """A publish was confirmed by RabbitMQ (ok) or failed (returned, nacked, timed out, down)."""
        ...


class DeliveryObserver(Protocol):
    """Called by the delivery workers; `channel` is how the receiver gets messages (push, mailbox ...)."""

    def attempted(self, channel: str, receiver_kind: str) -> None: ...

    def succeeded(self, channel: str, receiver_kind: str, seconds: float | None = None) -> None:
        """Delivered; `seconds`, when given, is how long the delivery attempt took."""
        ...

    def retried(self, channel: str, receiver_kind: str) -> None: ...

    def dead_lettered(self, channel: str, receiver_kind: str) -> None: ...


class NullIntakeObserver:
    def received(self) -> None:
        pass

    def refused(self, code: ErrorCode, standard: str | None, message: str | None) -> None:
        pass

    def unavailable(self, what: str) -> None:
        pass

    def validated(self, standard: str | None, message: str | None, seconds: float, valid: bool) -> None:
        pass

    def accepted(self, standard: str, message: str, receiver_kind: str, duplicate: bool) -> None:
        pass

    def acceptance(self, seconds: float) -> None:
        pass

    def published(self, ok: bool) -> None:
        pass


class NullDeliveryObserver:
    def attempted(self, channel: str, receiver_kind: str) -> None:
        pass

    def succeeded(self, channel: str, receiver_kind: str, seconds: float | None = None) -> None:
        pass

    def retried(self, channel: str, receiver_kind: str) -> None:
        pass

    def dead_lettered(self, channel: str, receiver_kind: str) -> None:
        pass


__all__ = ["DeliveryObserver", "IntakeObserver", "NullDeliveryObserver", "NullIntakeObserver"]
