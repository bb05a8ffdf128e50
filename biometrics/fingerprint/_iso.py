"""The fingerprint template (minutiae of one impression) and its record formats:
ISO/IEC 19794-2:2005 (read and written) and ANSI/INCITS 378-2004 (read)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from biometrics.exceptions import BiometricError

DPI = 500


class FingerprintError(BiometricError):
    """The image cannot give a usable template; ``reason`` is a machine-readable code."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TemplateFormatError(BiometricError):
    """Bytes that are not a valid ISO/IEC 19794-2:2005 finger minutiae record."""


class FingerPosition(IntEnum):
    """The ten fingers by their ISO/IEC 19794-2 position code (0, unknown, is not used here).
    ``name.lower()`` (``right_thumb``) is the finger's key in the kiosk's translations."""

    RIGHT_THUMB = 1
    RIGHT_INDEX = 2
    RIGHT_MIDDLE = 3
    RIGHT_RING = 4
    RIGHT_LITTLE = 5
    LEFT_THUMB = 6
    LEFT_INDEX = 7
    LEFT_MIDDLE = 8
    LEFT_RING = 9
    LEFT_LITTLE = 10

    def mirror(self) -> FingerPosition:
        """The same finger of the other hand (an operator's slip swaps the two)."""
        return FingerPosition(self + 5 if self <= 5 else self - 5)


MinutiaKind = Literal["ending", "bifurcation", "other"]
_KINDS: tuple[MinutiaKind, ...] = ("other", "ending", "bifurcation")  # ISO 19794-2 type codes


@dataclass(frozen=True)
class Minutia:
    """A ridge ending or bifurcation. Angle in radians, counter-clockwise from the x axis
    (image y axis pointing down), as ISO/IEC 19794-2 records it: an ending points along its
    ridge, into the ridge (as NIST's mindtct and commercial extractors write it)."""

    x: int
    y: int
    angle: float
    kind: MinutiaKind
    quality: int  # 1-100 (0: not reported)


@dataclass(frozen=True)
class FingerprintTemplate:
    """Minutiae of one finger impression, with the image geometry they refer to."""

    width: int
    height: int
    minutiae: tuple[Minutia, ...]
    dpi: int = DPI
    quality: int = 0  # finger quality 0-100
    position: int = 0  # ISO finger position: 0 unknown, 1 right thumb ... 10 left little

    # ---------------------------------------------------------------- ISO/IEC 19794-2:2005
    def to_iso19794_2(self) -> bytes:
        """The ISO/IEC 19794-2:2005 finger minutiae record (one finger view, no extended data)."""
        if len(self.minutiae) > 255:
            raise TemplateFormatError("a finger view holds at most 255 minutiae")
        if not (0 < self.width < 2**16 and 0 < self.height < 2**16):
            raise TemplateFormatError("image size out of range")
        ppcm = round(self.dpi / 2.54)
        body = bytearray()
        body += struct.pack(">BBBB", self.position, 0x00, self.quality, len(self.minutiae))
        for m in self.minutiae:
            if not (0 <= m.x < 2**14 and 0 <= m.y < 2**14):
                raise TemplateFormatError("minutia coordinates out of range")
            kind = {"other": 0, "ending": 1, "bifurcation": 2}[m.kind]
            angle = round(m.angle % (2 * math.pi) / (2 * math.pi) * 256) % 256
            body += struct.pack(">HHBB", kind << 14 | m.x, m.y, angle, m.quality)
        body += struct.pack(">H", 0)  # extended data block length: none
        length = 24 + len(body)
        header = (
            b"FMR\x00"
            + b" 20\x00"
            + struct.pack(">IHHHHHBB", length, 0, self.width, self.height, ppcm, ppcm, 1, 0)
        )
        return header + bytes(body)

    @classmethod
    def from_iso19794_2(cls, data: bytes) -> FingerprintTemplate:
        """Parse a single-view ISO/IEC 19794-2:2005 record (such as :meth:`to_iso19794_2`
        makes). The length field governs: zero bytes after the record (as some systems store
        records in fixed-size slots) are ignored; anything else there is refused."""
        cls._check_identity(data, 24)
        length, _equip, width, height, xres, yres, views, reserved = struct.unpack(
            ">IHHHHHBB", data[8:24]
        )
        return cls._parse_view(data, 24, length, (width, height, xres, yres, views, reserved), 256)

    @classmethod
    def from_ansi378(cls, data: bytes) -> FingerprintTemplate:
        """Parse a single-view ANSI/INCITS 378-2004 record: the US sibling of ISO 19794-2:2005
        (a 2- or 6-byte length, a CBEFF product identifier, angles in units of 2 degrees)."""
        cls._check_identity(data, 26)
        (length,) = struct.unpack(">H", data[8:10])
        start = 10
        if length == 0:  # a record over 65,535 bytes: the next 4 bytes hold its length
            if len(data) < 32:
                raise TemplateFormatError(f"record too short ({len(data)} bytes)")
            (length,) = struct.unpack(">I", data[10:14])
            start = 14
        _owner, _type, _equip, width, height, xres, yres, views, reserved = struct.unpack(
            ">HHHHHHHBB", data[start : start + 16]
        )
        header = (width, height, xres, yres, views, reserved)
        return cls._parse_view(data, start + 16, length, header, 180)

    @staticmethod
    def _check_identity(data: bytes, header: int) -> None:
        if len(data) < header + 4 + 2:
            raise TemplateFormatError(f"record too short ({len(data)} bytes)")
        if data[:4] != b"FMR\x00":
            raise TemplateFormatError("not a finger minutiae record (format identifier)")
        if data[4:8] != b" 20\x00":
            raise TemplateFormatError("unsupported version (expected the 2004/2005 editions)")

    @classmethod
    def _parse_view(
        cls,
        data: bytes,
        start: int,
        length: int,
        header: tuple[int, int, int, int, int, int],
        circle: int,
    ) -> FingerprintTemplate:
        """The finger view after the record header; ``circle``: angle units in a full turn,
        256 in ISO (1.40625 degrees each), 180 in ANSI (2 degrees each)."""
        width, height, xres, yres, views, reserved = header
        if length > len(data):
            raise TemplateFormatError(f"record length field {length} > {len(data)} bytes")
        if length < len(data):
            if any(data[length:]):
                raise TemplateFormatError(
                    f"{len(data) - length} bytes after the record's {length} are not padding"
                )
            data = data[:length]
        if views != 1:
            raise TemplateFormatError(f"{views} finger views; exactly one is supported")
        if reserved != 0 or width == 0 or height == 0 or xres == 0 or yres == 0:
            raise TemplateFormatError("invalid record header")
        position, view_imp, fquality, count = struct.unpack(">BBBB", data[start : start + 4])
        if position > 10 or fquality > 100:
            raise TemplateFormatError("invalid finger view header")
        if view_imp & 0x0F not in (0, 1, 2, 3, 8):
            raise TemplateFormatError("invalid impression type")
        first = start + 4
        end = first + 6 * count
        if len(data) < end + 2:
            raise TemplateFormatError("record truncated inside the minutiae")
        minutiae = []
        for i in range(count):
            tx, y, angle, q = struct.unpack(">HHBB", data[first + 6 * i : first + 6 + 6 * i])
            kind_code, x = tx >> 14, tx & 0x3FFF
            if kind_code == 3 or y >> 14 or q > 100 or x >= width or (y & 0x3FFF) >= height:
                raise TemplateFormatError(f"invalid minutia {i}")
            if angle >= circle:
                raise TemplateFormatError(f"invalid minutia {i} (angle {angle})")
            kind = _KINDS[kind_code]
            minutiae.append(Minutia(x, y, angle / circle * 2 * math.pi, kind, q))
        (ext,) = struct.unpack(">H", data[end : end + 2])
        if end + 2 + ext != len(data):
            raise TemplateFormatError("extended data length does not match the record")
        return cls(width, height, tuple(minutiae), round(xres * 2.54), fquality, position)
