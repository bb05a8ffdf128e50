"""Fingerprint readers: the ``FingerprintReader`` driver interface.

Drivers: MOSIP SBI devices (:mod:`devices.sbi`), libfprint readers (:mod:`devices.libfprint`)
and the simulated reader (:mod:`devices.simulation.fingerprint`, tests and demo only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devices.exceptions import DeviceError

POSITIONS = {
    1: "right thumb",
    2: "right index",
    3: "right middle",
    4: "right ring",
    5: "right little",
    6: "left thumb",
    7: "left index",
    8: "left middle",
    9: "left ring",
    10: "left little",
}


# ISO/IEC 19794-4 slaps: what a four-four-two reader captures at once
SLAPS: dict[str, tuple[int, ...]] = {"right": (2, 3, 4, 5), "left": (7, 8, 9, 10), "thumbs": (1, 6)}


@dataclass(frozen=True)
class DeviceInfo:
    """What a driver reports about the device it drives (``devices status``, the kiosk's
    technician page, the enrolment packet's device id)."""

    kind: str  # "camera", "fingerprint", "card_reader", "document_camera"
    driver: str  # the driver spec that opened it, e.g. "sbi:4501", "libfprint:virtual_image"
    vendor: str
    model: str
    serial: str
    firmware: str


class FingerprintReaderError(DeviceError):
    """The reader failed (disconnected, timed out, finger not detected); ``code`` says which:
    ``no_finger``, ``busy``, ``device_lost``, ``timeout``, ``untrusted_device``."""

    code = "no_finger"


class FingerprintReader(ABC):
    """Captures fingers as grey-scale images (dark ridges on light), ``dpi`` pixels per inch.

    A single-finger reader captures one position at a time; a slap reader (4-4-2) captures a
    slap and segments it: :meth:`capture_slap`."""

    dpi: int = 500

    @abstractmethod
    def info(self) -> DeviceInfo:
        """Vendor, model, serial and firmware of the device."""

    def check(self) -> None:  # noqa: B027 - drivers that can tell override it
        """FingerprintReaderError (``device_lost``) when the device has gone away (the
        daemon's hot-plug probe asks every few seconds while the reader is idle)."""

    @abstractmethod
    def capture(self, position: int) -> np.ndarray:
        """Capture the finger at ISO position 1-10; raises FingerprintReaderError."""

    def capture_blank(self) -> np.ndarray:
        """An image of the empty platen (calibration: uniformity, dirt). Few readers give one
        (they wait for a finger): FingerprintReaderError ``unsupported`` by default."""
        raise FingerprintReaderError(
            f"{type(self).__name__} cannot capture its empty platen", "unsupported"
        )

    def capture_slap(self, positions: Sequence[int]) -> dict[int, np.ndarray]:
        """Capture several fingers of one slap (see ``SLAPS``), segmented: position -> image.
        Single-finger readers capture them one after the other."""
        return {p: self.capture(p) for p in positions}

    def close(self) -> None:  # noqa: B027 - optional
        """Release the device."""
