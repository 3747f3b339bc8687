"""Delivery errors: every connector translates its failures into one of these at its boundary."""

from __future__ import annotations

from callipso_agent.errors import CallipsoError


class DeliveryError(CallipsoError):
    """A delivery attempt failed.

    ``retryable``: trying again later may succeed (timeouts, 5xx, throttling, connection refused).
    ``uncertain``: the receiver may have acted on the request (the reply was lost or timed out), so the
    next attempt must look for the effect of this one before acting again.
    ``retry_after``: seconds the receiver asked us to wait (HTTP Retry-After), if any.
    """

    kind = "delivery_error"

    def __init__(
        self, message: str, *, retryable: bool, uncertain: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.uncertain = uncertain
        self.retry_after = retry_after


class RetryableDelivery(DeliveryError):
    kind = "retryable"

    def __init__(self, message: str, *, uncertain: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=True, uncertain=uncertain, retry_after=retry_after)


class FinalDelivery(DeliveryError):
    """Retrying cannot help (refused credentials, rejected payload, unknown recipient)."""

    kind = "final"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)
