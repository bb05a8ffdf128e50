"""Why intake refuses a packet (each a RegistryError with its code and HTTP status)."""

from __future__ import annotations

from central_api.enrolment.schemas import ErrorCode
from central_api.exceptions import RegistryError


class IntakeError(RegistryError):
    """A packet the registry refuses; nothing of it is stored."""


class UndecryptablePacket(IntakeError):
    """Not a sealed packet, or one this registry cannot open."""

    status_code, code = 400, ErrorCode.UNDECRYPTABLE


class NotAuthenticated(IntakeError):
    """Unknown kiosk or a signature that does not verify: the two look the same from outside."""

    status_code, code = 401, ErrorCode.NOT_AUTHENTICATED

    def __init__(self) -> None:
        super().__init__("the request is not signed by a registered kiosk")


class KioskDeactivated(IntakeError):
    """The kiosk proved who it is, but it has been revoked."""

    status_code, code = 403, ErrorCode.KIOSK_DEACTIVATED


class ReplayedPacket(IntakeError):
    """An envelope already received."""

    status_code, code = 409, ErrorCode.REPLAY


class ClockSkew(IntakeError):
    """The envelope's ``sent_at`` is outside the replay window: the kiosk clock is wrong (or
    the envelope is an old capture). The answer carries the registry's time."""

    status_code, code = 409, ErrorCode.CLOCK_SKEW


class PacketConflict(IntakeError):
    """This kiosk already sent other content under this packet id."""

    status_code, code = 409, ErrorCode.PACKET_CONFLICT


class InvalidPacket(IntakeError):
    """The decrypted packet breaks the wire contract; the detail names the fields."""

    status_code, code = 422, ErrorCode.INVALID_PACKET


class CapturePolicyViolation(IntakeError):
    """The capture evidence fails the intake policy; ``reasons`` are stable codes."""

    status_code, code = 422, ErrorCode.CAPTURE_POLICY


class WitnessesNotRegistered(IntakeError):
    """The pair of witnesses is not two registered persons (which one is not said)."""

    status_code, code = 422, ErrorCode.WITNESSES_NOT_REGISTERED


class RateLimited(IntakeError):
    """Too many attempts of this kind from this kiosk (Retry-After)."""

    status_code, code = 429, ErrorCode.RATE_LIMITED
