"""Finger images on the wire: ISO/IEC 19794-4:2005 finger image records, one finger view
each, WSQ-compressed as the field does (NIST's codec through the ``wsq`` package), or lossless
PNG / JPEG 2000 (Pillow).

``read_header`` checks a record's structure and limits without decoding a pixel (what the
registry's intake may afford for every packet); ``FingerImage.from_iso19794_4`` decodes it
(the registry does that in a process of its own: WSQ is decoded by C code).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from biometrics.exceptions import BiometricError

Compression = Literal["WSQ", "PNG", "JPEG2000"]
_CODES: Final[dict[str, int]] = {"RAW": 0, "WSQ": 2, "JPEG2000": 4, "PNG": 5}
_NAMES: Final = {v: k for k, v in _CODES.items()}
_MAGIC = b"FIR\x00010\x00"
_GENERAL = struct.Struct(">8s6sHHBBHHHHBB2s")  # 32 bytes: the general record header
_VIEW = struct.Struct(">IBBBBBHHB")  # 14 bytes: the finger image header
MIN_SIDE = 64
MAX_SIDE = 1024  # a flat single finger at 1000 ppi fits; a 4-finger slap is segmented first
MIN_DPI, MAX_DPI = 250, 1000


class FingerImageError(BiometricError):
    """Bytes that are not a usable ISO/IEC 19794-4:2005 finger image record."""


@dataclass(frozen=True)
class FingerImageHeader:
    """What a record says about its image, read without decoding it."""

    position: int
    width: int
    height: int
    dpi: int
    compression: str
    quality: int


@dataclass(frozen=True, eq=False)
class FingerImage:
    """One finger's grey-scale image (uint8, dark ridges on light), its ISO/IEC 19794-2
    position (0: unknown) and resolution."""

    pixels: np.ndarray
    position: int = 0
    dpi: int = 500
    quality: int = 254  # 19794-4: 0-100, 254 not computed

    def to_iso19794_4(self, compression: Compression = "WSQ") -> bytes:
        """The image as an ISO/IEC 19794-4:2005 record of one finger view."""
        img = np.ascontiguousarray(self.pixels, dtype=np.uint8)
        if img.ndim != 2:
            raise FingerImageError("a finger image is a 2-D grey-scale array")
        h, w = img.shape
        if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
            raise FingerImageError(f"a {w}x{h} image is outside {MIN_SIDE}-{MAX_SIDE} px")
        if compression == "WSQ":
            import _wsq  # NIST's WSQ codec, from the wsq package

            data: bytes = _wsq.compress(img.tobytes(), h, w, 0.75)
        else:
            from PIL import Image

            buf = io.BytesIO()
            kw = {"irreversible": False} if compression == "JPEG2000" else {}
            Image.fromarray(img).save(buf, "JPEG2000" if compression == "JPEG2000" else "PNG", **kw)
            data = buf.getvalue()
        view = _VIEW.pack(_VIEW.size + len(data), self.position, 1, 1, self.quality, 0, w, h, 0)
        length = _GENERAL.size + len(view) + len(data)
        general = _GENERAL.pack(
            _MAGIC,
            length.to_bytes(6, "big"),
            0,  # capture device id: not given
            31,  # image acquisition level 31 (500 ppi, 256 grey levels)
            1,  # one finger
            1,  # scale units: pixels per inch
            self.dpi,
            self.dpi,
            self.dpi,
            self.dpi,
            8,
            _CODES[compression],
            b"\x00\x00",
        )
        return general + view + data

    @classmethod
    def from_iso19794_4(cls, data: bytes) -> FingerImage:
        """Decode a record (:func:`read_header`'s checks first); FingerImageError if the
        image data is corrupt or disagrees with its header."""
        head = read_header(data)
        payload = data[_GENERAL.size + _VIEW.size :]
        try:
            if head.compression == "WSQ":
                import _wsq

                raw, w, h, _ = _wsq.decompress(payload)
                pixels = np.frombuffer(raw, np.uint8).reshape(h, w)
            elif head.compression == "RAW":
                w, h = head.width, head.height
                if len(payload) != w * h:
                    raise FingerImageError("the raw image's length is not width x height")
                pixels = np.frombuffer(payload, np.uint8).reshape(h, w)
            else:
                from PIL import Image

                with Image.open(io.BytesIO(payload)) as im:
                    if im.format not in ("PNG", "JPEG2000"):
                        raise FingerImageError(f"the image data is {im.format}, not its header's")
                    if im.size != (head.width, head.height):
                        raise FingerImageError("the image's size disagrees with its header")
                    pixels = np.asarray(im.convert("L"))
        except FingerImageError:
            raise
        except Exception as exc:  # the codecs raise bare Exception / OSError / ValueError
            raise FingerImageError(f"the {head.compression} image is corrupt") from exc
        if pixels.shape != (head.height, head.width):
            raise FingerImageError("the image's size disagrees with its header")
        return cls(pixels.copy(), head.position, head.dpi, head.quality)


def read_header(data: bytes) -> FingerImageHeader:
    """Check an ISO/IEC 19794-4:2005 record's structure and limits (one finger view, 8-bit,
    WSQ / PNG / JPEG 2000 / raw, sides and resolution in range, lengths consistent) without
    decoding the image; FingerImageError says what is wrong."""
    if len(data) < _GENERAL.size + _VIEW.size + 1:
        raise FingerImageError("too short for an ISO/IEC 19794-4 finger image record")
    magic, length6, _, _, count, units, _, _, hres, vres, depth, code, _ = _GENERAL.unpack_from(
        data
    )
    if magic != _MAGIC:
        raise FingerImageError("not an ISO/IEC 19794-4:2005 record (FIR 010)")
    if int.from_bytes(length6, "big") != len(data):
        raise FingerImageError("the record length disagrees with its size (truncated?)")
    if count != 1:
        raise FingerImageError("a record must hold exactly one finger")
    if code not in _NAMES:
        raise FingerImageError(f"unsupported image compression code {code}")
    if depth != 8:
        raise FingerImageError("only 8-bit grey-scale images are accepted")
    dpi = hres if units == 1 else round(hres * 2.54) if units == 2 else 0
    if hres != vres or not MIN_DPI <= dpi <= MAX_DPI:
        raise FingerImageError(f"unsupported resolution ({hres}x{vres}, units {units})")
    block, position, views, _, quality, _, w, h, _ = _VIEW.unpack_from(data, _GENERAL.size)
    if block != len(data) - _GENERAL.size:
        raise FingerImageError("the finger block length disagrees with the record")
    if views != 1 or not 0 <= position <= 10:
        raise FingerImageError("one view of a finger in position 0-10 is expected")
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise FingerImageError(f"a {w}x{h} image is outside {MIN_SIDE}-{MAX_SIDE} px")
    return FingerImageHeader(position, w, h, dpi, _NAMES[code], quality)
