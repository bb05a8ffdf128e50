"""Why the RSU domain refuses a request: each a :class:`RegistryError` with its code and HTTP
status. Failures of the registry's own scoring configuration (a model or threshold file) are
:class:`~central_api.rsu.scoring.RSUError` (an internal error), re-exported here."""

from __future__ import annotations

from central_api.enrolment.schemas import ErrorCode
from central_api.exceptions import RegistryError
from central_api.rsu.scoring import RSUError

__all__ = [
    "AppealNotAllowed",
    "AppealStateConflict",
    "AppealTooLate",
    "HouseholdNotFound",
    "InvalidDeclaration",
    "NotFoundInRSU",
    "PersonInAnotherHousehold",
    "PersonNotRegistered",
    "RSUError",
    "RSURefusal",
    "RescoreJobConflict",
]


class RSURefusal(RegistryError):
    """A request about the social registry that the registry refuses; nothing was changed."""


class NotFoundInRSU(RSURefusal):
    """No such household, declaration version, decision, appeal or job."""

    status_code, code = 404, ErrorCode.NOT_FOUND


class HouseholdNotFound(NotFoundInRSU):
    """No household has this RSU reference (or it has no declaration yet)."""


class InvalidDeclaration(RSURefusal):
    """The declaration breaks a rule of the register (the detail says which)."""

    status_code, code = 422, ErrorCode.INVALID_REQUEST


class PersonNotRegistered(InvalidDeclaration):
    """A member's IDCS is not in the population register: every member must hold one."""


class PersonInAnotherHousehold(RSURefusal):
    """A person already belongs to another household: one person, one household at a time
    (moving is a transfer)."""

    status_code, code = 409, ErrorCode.CONFLICT


class AppealNotAllowed(RSURefusal):
    """Only a rejection can be appealed, once at a time."""

    status_code, code = 409, ErrorCode.CONFLICT


class AppealTooLate(RSURefusal):
    """An appeal filed after the 15 days that follow a rejection."""

    status_code, code = 422, ErrorCode.INVALID_REQUEST


class AppealStateConflict(RSURefusal):
    """A move the appeal's state machine does not allow from its current state."""

    status_code, code = 409, ErrorCode.CONFLICT


class RescoreJobConflict(RSURefusal):
    """A re-score job that cannot run (already finished)."""

    status_code, code = 409, ErrorCode.CONFLICT
