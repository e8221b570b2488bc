"""Domain errors raised by services; the API and the pages turn them into 4xx naming the field."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the marketplace was broken. ``field`` names the input at fault (or is None)."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, list[str]]:
        return {self.field or "non_field_errors": [self.message]}


class InvalidInput(DomainError):
    """Input that is well-formed but breaks a domain rule (window order, node size, …)."""


class NotAllowed(DomainError):
    """The caller's role or organisation may not do this."""

    status_code = 403


class CapacityGone(DomainError):
    """The GPUs a plan or an edit counted on are no longer free."""

    status_code = 409


class InvalidTransition(DomainError):
    """The object's status does not allow this action (cancelling a cancelled request, …)."""

    status_code = 409


class NotFound(DomainError):
    """No such object for this caller: another party's objects do not exist for it."""

    status_code = 404


class QuotaExceeded(DomainError):
    """The organisation is at one of its limits (open requests, …); nothing was written."""

    status_code = 429


class SpendCapExceeded(DomainError):
    """A request's worst case would take its organisation's or its API key's month past the
    monthly spend cap; nothing was written. HTTP's 402 Payment Required says it: raise the cap or
    wait for next month."""

    status_code = 402
