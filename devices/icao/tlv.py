"""Strict BER-TLV (ISO/IEC 7816-4, DER subset) for the eMRTD's files and APDUs.

Every parser on card data goes through here: malformed input raises ``TLVError`` (a
``ValueError``) with a short description, never IndexError or garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.exceptions import CardError


class TLVError(CardError, ValueError):
    """Malformed TLV data."""


@dataclass(frozen=True)
class TLV:
    """One data object: its tag (as an int: 0x5F1F, 0x61, ...), value and constructed bit."""

    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        """Whether the value holds nested data objects."""
        first = self.tag
        while first > 0xFF:
            first >>= 8
        return bool(first & 0x20)

    def children(self) -> list[TLV]:
        """The nested data objects of a constructed object."""
        if not self.constructed:
            raise TLVError(f"tag {self.tag:X} is primitive, it has no children")
        return parse_all(self.value)

    def find(self, tag: int) -> TLV:
        """The first child with ``tag`` (TLVError if absent)."""
        for child in self.children():
            if child.tag == tag:
                return child
        raise TLVError(f"tag {tag:X} missing inside {self.tag:X}")


def _tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("truncated: tag expected")
    first = data[pos]
    if first in (0x00, 0xFF):
        raise TLVError(f"invalid tag byte {first:02X} at offset {pos}")
    tag, pos = first, pos + 1
    if first & 0x1F == 0x1F:  # multi-byte tag
        for count in range(3):
            if pos >= len(data):
                raise TLVError("truncated inside a multi-byte tag")
            b = data[pos]
            if count == 0 and b == 0x80:
                raise TLVError("non-minimal tag encoding")
            tag, pos = (tag << 8) | b, pos + 1
            if not b & 0x80:
                break
        else:
            raise TLVError("tag longer than 4 bytes")
    return tag, pos


def _length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TLVError("truncated: length expected")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if first == 0x80:
        raise TLVError("indefinite length is not allowed")
    n = first & 0x7F
    if n > 4:
        raise TLVError(f"length field of {n} bytes is too long")
    if pos + n > len(data):
        raise TLVError("truncated inside a length field")
    return int.from_bytes(data[pos : pos + n], "big"), pos + n


def parse_one(data: bytes, pos: int = 0) -> tuple[TLV, int]:
    """The data object starting at ``pos`` and the offset just after it."""
    tag, pos = _tag(data, pos)
    length, pos = _length(data, pos)
    if pos + length > len(data):
        raise TLVError(f"tag {tag:X}: value of {length} bytes runs past the end of the data")
    return TLV(tag, bytes(data[pos : pos + length])), pos + length


def parse(data: bytes) -> TLV:
    """Exactly one data object filling ``data``."""
    tlv, end = parse_one(data)
    if end != len(data):
        raise TLVError(f"{len(data) - end} unexpected bytes after tag {tlv.tag:X}")
    return tlv


def parse_all(data: bytes) -> list[TLV]:
    """A sequence of data objects filling ``data``."""
    out, pos = [], 0
    while pos < len(data):
        tlv, pos = parse_one(data, pos)
        out.append(tlv)
    return out


def header_length(data: bytes) -> int:
    """Total length (tag + length + value) of the object whose first bytes are ``data``:
    lets a reader fetch a file whose size only its own header tells."""
    _, pos = _tag(data, 0)
    length, pos = _length(data, pos)
    return pos + length


def encode_length(n: int) -> bytes:
    """DER length octets."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode(tag: int, value: bytes) -> bytes:
    """One data object."""
    raw_tag = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    return raw_tag + encode_length(len(value)) + value
