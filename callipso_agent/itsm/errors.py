"""Typed ITSM errors: what the EasyVista connector raises, each retryable or final."""

from __future__ import annotations

from callipso_agent.outbox.errors import DeliveryError


class ItsmError(DeliveryError):
    kind = "itsm_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        uncertain: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, uncertain=uncertain, retry_after=retry_after)
        self.status = status


class ItsmAuthError(ItsmError):
    """401 (credentials refused) or 403 (no rights on this account or resource). Final."""

    kind = "itsm_auth"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, retryable=False, status=status)


class ItsmNotFound(ItsmError):
    kind = "itsm_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status=404)


class ItsmRejected(ItsmError):
    """400 malformed request, 406 unknown recipient (or outside the REST user's domains). Final."""

    kind = "itsm_rejected"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message, retryable=False, status=status)


class ItsmFunctionalError(ItsmError):
    """590: EasyVista refused the content (unknown urgency id, nothing to update, wrong ticket state)."""

    kind = "itsm_functional"

    def __init__(self, message: str, *, detail: str, correlation_id: str | None = None) -> None:
        super().__init__(message, retryable=False, status=590)
        self.detail = detail
        self.correlation_id = correlation_id


class ItsmUnavailable(ItsmError):
    """Connection refused or lost, 5xx, 429: try again later. ``uncertain`` when the request may have run."""

    kind = "itsm_unavailable"

    def __init__(
        self, message: str, *, uncertain: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retryable=True, uncertain=uncertain, status=status, retry_after=retry_after)


class ItsmTimeout(ItsmUnavailable):
    kind = "itsm_timeout"


class ItsmProtocolError(ItsmError):
    """A success status with a reply we cannot read (no HREF): the request probably ran."""

    kind = "itsm_protocol"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=True, uncertain=True, status=status)
