"""The operators domain's exceptions, under the registry's one root."""

from __future__ import annotations

from central_api.enrolment.schemas import ErrorCode
from central_api.exceptions import RegistryError


class ConsoleError(RegistryError):
    """A console request refused; the console answers it with a page, not JSON."""


class SignInFailed(ConsoleError):
    """Wrong account, password or code, a locked or disabled account: one message for all,
    so the answer tells nobody which part was wrong."""

    status_code, code = 401, ErrorCode.NOT_AUTHENTICATED


class NotSignedIn(ConsoleError):
    """No valid session (never signed in, signed out, idle or too old)."""

    status_code, code = 401, ErrorCode.NOT_AUTHENTICATED


class Forbidden(ConsoleError):
    """Signed in, but the role does not allow this (or the CSRF token is wrong)."""

    status_code, code = 403, ErrorCode.FORBIDDEN


class Conflict(ConsoleError):
    """The request does not fit the current state (a case claimed by someone else, a second
    eye who was the first)."""

    status_code, code = 409, ErrorCode.CONFLICT
