"""The registry's one exception root: every refusal carries a stable code (the wire contract's
:class:`~central_api.enrolment.schemas.ErrorCode`) and the HTTP status that goes with it.

One exception handler (``main.create_app``) turns a :class:`RegistryError` into an
:class:`~central_api.enrolment.schemas.ErrorAnswer`; routes and services only raise.
"""

from __future__ import annotations

from central_api.enrolment.schemas import RETRYABLE, ErrorAnswer, ErrorCode


class RegistryError(Exception):
    """A request the registry refuses; subclasses fix ``status_code`` and ``code``."""

    status_code = 400
    code = ErrorCode.INVALID_REQUEST

    def __init__(
        self,
        detail: object,
        *,
        reasons: list[str] | None = None,
        server_time: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail if isinstance(detail, str) else self.code.value)
        self.detail, self.reasons = detail, reasons or []
        self.server_time, self.retry_after = server_time, retry_after
        self.sender: str | None = None  # the kiosk that proved who it is, if it did

    def answer(self) -> ErrorAnswer:
        """The error body."""
        return ErrorAnswer(
            code=self.code,
            retryable=self.code in RETRYABLE,
            detail=self.detail,
            reasons=self.reasons,
            server_time=self.server_time,
        )

    def headers(self) -> dict[str, str]:
        """Extra response headers (Retry-After)."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


class InternalError(RegistryError):
    """The registry itself failed (configuration, schema, keys, identifier space): not the
    sender's fault. Should one reach a request, it is logged and answered as ``unavailable``
    (retry later) without its message, which may name files or keys."""

    status_code, code = 503, ErrorCode.UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.detail = "the registry is unavailable; retry later"


class NotFound(RegistryError):
    """No such resource for this caller."""

    status_code, code = 404, ErrorCode.NOT_FOUND


class InvalidRequest(RegistryError):
    """A request (not a packet) that breaks the API's rules."""

    status_code, code = 422, ErrorCode.INVALID_REQUEST


class Unavailable(RegistryError):
    """Storage failed; nothing was stored. Retry later."""

    status_code, code = 503, ErrorCode.UNAVAILABLE


class Overloaded(RegistryError):
    """The dedup queue is full: come back later (Retry-After)."""

    status_code, code = 503, ErrorCode.OVERLOADED


class Busy(RegistryError):
    """Too many request bodies are being received at once (Retry-After)."""

    status_code, code = 503, ErrorCode.BUSY


class BodyTimeout(RegistryError):
    """The request body did not arrive in time."""

    status_code, code = 408, ErrorCode.BODY_TIMEOUT


class TooLarge(RegistryError):
    """The request body is over the size limit."""

    status_code, code = 413, ErrorCode.TOO_LARGE
