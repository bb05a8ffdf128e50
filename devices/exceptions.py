"""The devices package's one exception root, and the card errors its modules share.

Every error carries a stable ``code``: it travels from the device daemon to the kiosk, which
shows that code's message in the citizen's language.
"""

from __future__ import annotations


class DeviceError(Exception):
    """Root of every error the devices package raises."""

    code = "device_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class CardError(DeviceError):
    """Reading the document failed; ``str()`` is fit to show to the operator."""

    code = "chip_error"


class NoReader(CardError):
    """No PC/SC reader (or no PC/SC service)."""

    code = "no_reader"


class NoCard(CardError):
    """No card on the reader."""

    code = "no_card"


class CardRemoved(CardError):
    """The card left the reader while it was being read."""

    code = "card_removed"


class AccessDenied(CardError):
    """The chip refused the access key (MRZ / CAN), or the terminal's answer to the chip's
    challenge (the emulated card): the typed data does not match the card."""

    code = "access_denied"


class ChipError(CardError):
    """The chip answered with an error or with data that does not parse."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message)
        self.sw = sw  # the status word, when the chip refused a command


class CardTooSlow(CardError):
    """The card stopped answering, or answers so slowly that the read would not finish in
    time (a per-command timeout or the whole read's deadline passed)."""

    code = "card_too_slow"


class ChipNotGenuine(ChipError):
    """Chip Authentication failed: the chip does not hold the private key its signed DG14
    names, as a copied (cloned) chip would not."""

    code = "not_authentic"
