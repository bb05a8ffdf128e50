"""What MOSIP hands an ABIS: a datashare (the CBEFF, encrypted to the ABIS partner's key),
the CBEFF XML (ISO/IEC 19785-3 as MOSIP writes it: a root BIR holding one BIR per captured
item), and in each BIR's BDB an ISO record: 19794-4 finger image, 19794-2 finger minutiae,
19794-5 face image or 19794-6 iris image, in the 2011 versions MOSIP's devices write (the
2005 finger image record is read too).

``parse`` gives :class:`Biometrics`; ``build`` writes the same layout (tests, benches and a
registry that forwards its own captures). Every refusal is a :class:`FormatError` carrying the
MOSIP failure reason it answers (11 no data, 16 invalid CBEFF, 7 the datashare cannot be
opened). Notes on the format, with sources: ``docs/mosip-abis.md`` §4.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import struct
from dataclasses import dataclass, field
from typing import Final
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from biometrics import fingerprint as fp
from central_api.abis.exceptions import AbisError

NS: Final = "http://standards.iso.org/iso-iec/19785/-3/ed-2/"
MAX_CBEFF_BYTES: Final = 16 * 1024 * 1024
MAX_BIRS: Final = 32  # ten fingers, two irises, a face, an exception photo: 14 in practice
# MOSIP's <Subtype> of each finger and its ISO/IEC 19794-4 position (bio-utils FingerPosition)
FINGERS: Final = {
    "Right Thumb": 1,
    "Right IndexFinger": 2,
    "Right MiddleFinger": 3,
    "Right RingFinger": 4,
    "Right LittleFinger": 5,
    "Left Thumb": 6,
    "Left IndexFinger": 7,
    "Left MiddleFinger": 8,
    "Left RingFinger": 9,
    "Left LittleFinger": 10,
}
_SUBTYPE: Final = {v: k for k, v in FINGERS.items()}
# BDB format types under MOSIP's organisation (patron 257)
FINGER_MINUTIAE, FINGER_IMAGE, FACE_IMAGE, IRIS_IMAGE = 2, 7, 8, 9


class FormatError(AbisError):
    """A datashare, CBEFF or ISO record the ABIS cannot use; ``reason``: MOSIP's failure
    reason code for it."""

    def __init__(self, message: str, reason: int = 16) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Biometrics:
    """What one CBEFF carries. Face images as encoded images (JPEG, JPEG 2000 or PNG); finger
    images and minutiae templates by ISO position; iris records kept as they came (stored with
    the reference, never matched: this ABIS has no iris matcher); ``exceptions``: the subtypes
    MOSIP marked as not captured."""

    faces: list[bytes] = field(default_factory=list)
    finger_images: dict[int, fp.FingerImage] = field(default_factory=dict)
    finger_templates: dict[int, fp.FingerprintTemplate] = field(default_factory=dict)
    irises: list[bytes] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        """Nothing this ABIS can match (irises alone are stored, not matched)."""
        return not (self.faces or self.finger_images or self.finger_templates)


# -- the datashare --------------------------------------------------------------------------
_SPLITTER: Final = b"#KEY_SPLITTER#"
_VERSION_R2: Final = b"VER_R2"


def open_datashare(body: bytes, key: rsa.RSAPrivateKey | None) -> bytes:
    """The CBEFF XML inside a datashare body. With ``key`` (the ABIS partner's private key),
    the body is MOSIP's encrypted share: base64 (URL-safe or standard) of ``key block
    #KEY_SPLITTER# data block``; the key block is ``VER_R2`` + the certificate's SHA-256
    thumbprint + the AES key wrapped with RSA-OAEP (SHA-256); the data block is 32 bytes of
    AAD (its first 12 the GCM nonce) + AES-GCM ciphertext and tag. Without a key (a deployment
    with MOSIP's share encryption off), the body is the XML itself."""
    if key is None:
        return body
    try:
        raw = _b64(body.strip())
    except ValueError as exc:
        raise FormatError("the datashare is not base64", 7) from exc
    head, sep, data = raw.partition(_SPLITTER)
    if not sep or not head.startswith(_VERSION_R2):
        raise FormatError("the datashare is not MOSIP's VER_R2 layout", 7)
    wrapped = head[len(_VERSION_R2) + 32 :]
    try:
        aes_key = key.decrypt(
            wrapped,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        aad, sealed = data[:32], data[32:]
        return AESGCM(aes_key).decrypt(aad[:12], sealed, aad)
    except Exception as exc:  # wrong key, tampered share: both are 'cannot fetch' to MOSIP
        raise FormatError("the datashare cannot be decrypted with this ABIS's key", 7) from exc


def seal_datashare(xml: bytes, public_key: rsa.RSAPublicKey, thumbprint: bytes) -> bytes:
    """The datashare body MOSIP would serve for ``xml`` (what :func:`open_datashare` opens):
    for tests, benches and a registry forwarding its own captures to a MOSIP-shaped ABIS."""
    import os

    aes_key, aad = os.urandom(32), os.urandom(32)
    wrapped = public_key.encrypt(
        aes_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    sealed = AESGCM(aes_key).encrypt(aad[:12], xml, aad)
    return base64.urlsafe_b64encode(
        _VERSION_R2 + thumbprint[:32].ljust(32, b"\0") + wrapped + _SPLITTER + aad + sealed
    )


def _b64(text: bytes | str) -> bytes:
    """Base64 in either alphabet, padded or not (MOSIP's decoder accepts both)."""
    s = text.encode() if isinstance(text, str) else text
    s = b"".join(s.split())
    s = s.replace(b"-", b"+").replace(b"_", b"/")
    try:
        return base64.b64decode(s + b"=" * (-len(s) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


# -- CBEFF ----------------------------------------------------------------------------------
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(e: Element, name: str) -> Element | None:
    for c in e:
        if _local(c.tag) == name:
            return c
    return None


def _text(e: Element | None, *path: str) -> str:
    for name in path:
        if e is None:
            return ""
        e = _child(e, name)
    return "" if e is None or e.text is None else e.text.strip()


def parse(xml: bytes) -> Biometrics:
    """The biometrics of a MOSIP CBEFF. FormatError(16) for XML that is not a CBEFF BIR, or a
    BDB that is not the ISO record its BDBInfo announces; FormatError(11) when no BIR carries
    data. BIRs MOSIP marks as exceptions (no BDB, or ``EXCEPTION`` true) are listed, not read;
    an exception photo is ignored (it is not for deduplication)."""
    if len(xml) > MAX_CBEFF_BYTES:
        raise FormatError(f"the CBEFF is over {MAX_CBEFF_BYTES} bytes")
    try:
        root = SafeET.fromstring(xml)
    except Exception as exc:  # ParseError, and defusedxml's refusals of DTDs and entities
        raise FormatError("the CBEFF is not well-formed XML (or declares a DTD)") from exc
    if _local(root.tag) != "BIR":
        raise FormatError("the CBEFF's root element is not a BIR")
    birs = [c for c in root if _local(c.tag) == "BIR"]
    if len(birs) > MAX_BIRS:
        raise FormatError(f"the CBEFF holds more than {MAX_BIRS} BIRs")
    out = Biometrics()
    for bir in birs:
        info = _child(bir, "BDBInfo")
        kind = _text(info, "Type")
        subtype = " ".join(_text(info, "Subtype").split())
        others = {
            (e.get("key") or ""): (e.text or "").strip()
            for o in bir
            if _local(o.tag) == "others"
            for e in o
        }
        bdb = _text(bir, "BDB")
        if not bdb or others.get("EXCEPTION", "").lower() == "true":
            out.exceptions.append(f"{kind} {subtype}".strip())
            continue
        try:
            record = _b64(bdb)
        except ValueError as exc:
            raise FormatError(f"the {kind} BDB is not base64") from exc
        fmt = _text(info, "Format", "Type")
        try:
            _read_bdb(out, kind, subtype, fmt, record)
        except (fp.FingerImageError, fp.TemplateFormatError, struct.error, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"the {kind} BDB is not a usable ISO record") from exc
    if out.empty() and not out.irises:
        raise FormatError("the CBEFF carries no biometric data", 11)
    return out


def _read_bdb(out: Biometrics, kind: str, subtype: str, fmt: str, record: bytes) -> None:
    if kind == "Finger":
        position = FINGERS.get(subtype)
        if position is None:
            raise FormatError(f"unknown finger subtype {subtype[:40]!r}")
        if fmt == str(FINGER_MINUTIAE) or record[:4] == b"FMR\0":
            t = fp.FingerprintTemplate.from_iso19794_2(record)
            out.finger_templates[position] = at_position(t, position)
        else:
            image = read_finger_record(record)
            if image.position not in (0, position):
                raise FormatError(f"the {subtype} record says finger position {image.position}")
            out.finger_images[position] = fp.FingerImage(
                image.pixels, position, image.dpi, image.quality
            )
    elif kind == "Face":
        out.faces.append(read_face_record(record))
    elif kind == "Iris":
        if record[:4] != b"IIR\0":
            raise FormatError("the iris BDB is not an ISO/IEC 19794-6 record")
        out.irises.append(record)
    elif kind == "ExceptionPhoto":
        return
    else:
        raise FormatError(f"unknown BIR type {kind[:40]!r}")


def at_position(t: fp.FingerprintTemplate, position: int) -> fp.FingerprintTemplate:
    """``t`` at ISO finger ``position``."""
    return dataclasses.replace(t, position=position)


def build(
    *,
    faces: list[bytes] = (),  # type: ignore[assignment]
    finger_images: dict[int, bytes] | None = None,
    finger_templates: dict[int, bytes] | None = None,
    irises: list[bytes] = (),  # type: ignore[assignment]
    exceptions: list[int] = (),  # type: ignore[assignment]
) -> bytes:
    """A CBEFF in MOSIP's layout: ``faces``: ISO 19794-5 records; ``finger_images``: 19794-4
    records by position; ``finger_templates``: 19794-2 records by position; ``irises``: 19794-6
    records; ``exceptions``: finger positions MOSIP would mark as not captured."""
    root = Element("BIR", xmlns=NS)
    SubElement(SubElement(root, "BIRInfo"), "Integrity").text = "false"

    def bir(kind: str, subtype: str, fmt: int, record: bytes | None) -> None:
        b = SubElement(root, "BIR")
        for name in ("Version", "CBEFFVersion"):
            v = SubElement(b, name)
            SubElement(v, "Major").text, SubElement(v, "Minor").text = "1", "1"
        SubElement(SubElement(b, "BIRInfo"), "Integrity").text = "false"
        info = SubElement(b, "BDBInfo")
        f = SubElement(info, "Format")
        SubElement(f, "Organization").text, SubElement(f, "Type").text = "Mosip", str(fmt)
        SubElement(info, "Type").text = kind
        SubElement(info, "Subtype").text = subtype
        SubElement(info, "Level").text = "Raw"
        SubElement(info, "Purpose").text = "Enroll"
        if record is not None:
            SubElement(b, "BDB").text = base64.b64encode(record).decode()
        others = SubElement(b, "others")
        SubElement(others, "entry", key="EXCEPTION").text = str(record is None).lower()

    for record in faces:
        bir("Face", "", FACE_IMAGE, record)
    for position, record in sorted((finger_images or {}).items()):
        bir("Finger", _SUBTYPE[position], FINGER_IMAGE, record)
    for position, record in sorted((finger_templates or {}).items()):
        bir("Finger", _SUBTYPE[position], FINGER_MINUTIAE, record)
    for position in exceptions:
        bir("Finger", _SUBTYPE[position], FINGER_IMAGE, None)
    for i, record in enumerate(irises):
        bir("Iris", ("Right", "Left")[i % 2], IRIS_IMAGE, record)
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + tostring(root)


def _representation(data: bytes, general: struct.Struct, what: str) -> tuple[int, int, int]:
    """The first representation of a 2011 record (finger image or face: the same general
    header up to the certification flag, the same representation header up to its quality
    and certification blocks): where it starts, where its own fields start, where it ends."""
    if len(data) < general.size + 4 + 19:
        raise FormatError(f"the {what} record is truncated")
    _, length, count, cert = general.unpack_from(data)[:4]
    if length != len(data) or count < 1:
        raise FormatError(f"the {what} record's lengths disagree")
    at = general.size
    (rep_len,) = struct.unpack_from(">I", data, at)
    if rep_len < 4 + 19 or at + rep_len > len(data):
        raise FormatError(f"the {what} representation runs past the record")
    p = at + 4 + 9 + 5  # length, capture date and time, device technology / vendor / type
    p += 1 + 5 * data[p]  # quality blocks
    if cert:
        if p >= at + rep_len:
            raise FormatError(f"the {what} representation is truncated")
        p += 1 + 3 * data[p]  # certification blocks
    return at, p, at + rep_len


# -- ISO/IEC 19794-4:2011 finger image records ------------------------------------------------
_FIR_2011: Final = b"FIR\x00020\x00"
_FIR_GENERAL = struct.Struct(">8sIHBB")  # 16 bytes
# after the quality blocks: position, representation number, scale units, 4 sampling rates,
# bit depth, compression, impression type, line lengths
_FIR_TAIL = struct.Struct(">BBBHHHHBBBHH")  # 19 bytes
_FIR_COMPRESSION_2011: Final = {
    0: "RAW",
    2: "WSQ",
    3: "JPEG",
    4: "JPEG2000",
    5: "JPEG2000",
    6: "PNG",
}


def finger_record(image: fp.FingerImage, compression: str = "JPEG2000") -> bytes:
    """``image`` as an ISO/IEC 19794-4:2011 record (one representation), as MOSIP's devices
    write it: JPEG 2000 lossless by default, or WSQ / PNG."""
    from PIL import Image

    pixels = np.ascontiguousarray(image.pixels, dtype=np.uint8)
    h, w = pixels.shape
    if compression == "WSQ":
        import _wsq

        data, code = bytes(_wsq.compress(pixels.tobytes(), h, w, 0.75)), 2
    else:
        buf = io.BytesIO()
        if compression == "PNG":
            Image.fromarray(pixels).save(buf, "PNG")
            code = 6
        else:
            Image.fromarray(pixels).save(buf, "JPEG2000", irreversible=False)
            code = 5
        data = buf.getvalue()
    quality = (
        struct.pack(">BBHH", min(image.quality, 100), 0, 0, 0) if image.quality <= 100 else b""
    )
    head = (
        b"\x07\xea\x01\x01\x00\x00\x00\x00\x00"  # capture date: 2026-01-01 (not recorded)
        + b"\x00\x00\x00\x00\x00"  # device technology, vendor, type: unspecified
        + bytes([len(quality) // 5])
        + quality
        + _FIR_TAIL.pack(
            image.position, 1, 1, image.dpi, image.dpi, image.dpi, image.dpi, 8, code, 0, w, h
        )
    )
    representation = struct.pack(">I", 4 + len(head) + len(data)) + head + data
    return (
        _FIR_GENERAL.pack(_FIR_2011, _FIR_GENERAL.size + len(representation), 1, 0, 1)
        + representation
    )


def read_finger_record(data: bytes) -> fp.FingerImage:
    """The first finger image of an ISO/IEC 19794-4 record, 2011 ("020") or 2005 ("010");
    FingerImageError (or FormatError) when it is not one."""
    if data[:8] != _FIR_2011:
        return fp.FingerImage.from_iso19794_4(data)  # the 2005 record, or its error
    first, p, end = _representation(data, _FIR_GENERAL, "finger image")
    quality_blocks = data[first + 4 + 9 + 5]
    if p + _FIR_TAIL.size > end:
        raise FormatError("the finger image representation is truncated")
    (position, _, units, _, _, hres, _, depth, code, _, w, h) = _FIR_TAIL.unpack_from(data, p)
    payload = data[p + _FIR_TAIL.size : end]
    if depth != 8 or code not in _FIR_COMPRESSION_2011:
        raise FormatError(f"unsupported finger image (depth {depth}, compression {code})")
    dpi = hres if units == 1 else round(hres * 2.54)
    if not 250 <= dpi <= 1000:
        raise FormatError(f"a finger image at {dpi} ppi is out of range")
    try:
        if code == 2:
            import _wsq

            raw, ww, hh, _ = _wsq.decompress(payload)
            pixels = np.frombuffer(raw, np.uint8).reshape(hh, ww)
        elif code == 0:
            pixels = np.frombuffer(payload, np.uint8).reshape(h, w)
        else:
            from PIL import Image

            with Image.open(io.BytesIO(payload)) as im:
                pixels = np.asarray(im.convert("L"))
    except Exception as exc:
        raise FormatError("the finger image data is corrupt") from exc
    if pixels.shape != (h, w):
        raise FormatError("the finger image's size disagrees with its header")
    q = data[first + 4 + 9 + 5 + 1] if quality_blocks else 254
    return fp.FingerImage(pixels.copy(), position, dpi, q)


# -- ISO/IEC 19794-5:2011 face image records ---------------------------------------------------
_FAC_2011: Final = b"FAC\x00030\x00"
_FAC_2005: Final = b"FAC\x00010\x00"
_FAC_GENERAL = struct.Struct(">8sIHBH")  # 17 bytes
_FAC_INFO = struct.Struct(">HBBBB3sH3s3s")  # 17 bytes: facial information
_FAC_IMAGE = struct.Struct(">BBHHBHBB")  # 11 bytes: image information
_FAC_TYPES: Final = {"JPEG": 0, "JPEG2000": 2, "PNG": 3}


def face_record(image: bytes, width: int, height: int, kind: str = "JPEG") -> bytes:
    """An encoded face image (``kind``: JPEG, JPEG2000 or PNG) as an ISO/IEC 19794-5:2011
    record of one representation (a full frontal image, no landmarks)."""
    head = (
        b"\x07\xea\x01\x01\x00\x00\x00\x00\x00"  # capture date: not recorded
        + b"\x00\x00\x00\x00\x00"  # device: unspecified
        + b"\x00"  # no quality blocks
        + _FAC_INFO.pack(0, 0, 0, 0, 0, b"\0\0\0", 0, b"\0\0\0", b"\0\0\0")
        + _FAC_IMAGE.pack(1, _FAC_TYPES[kind], width, height, 0, 0, 0, 1)
        + struct.pack(">I", len(image))
    )
    representation = struct.pack(">I", 4 + len(head) + len(image)) + head + image
    general = _FAC_GENERAL.pack(_FAC_2011, _FAC_GENERAL.size + len(representation), 1, 0, 0)
    return general + representation


def read_face_record(data: bytes) -> bytes:
    """The encoded image of the first face of an ISO/IEC 19794-5 record (2011 or 2005):
    JPEG, JPEG 2000 or PNG bytes, checked by their signature; FormatError otherwise."""
    if data[:8] == _FAC_2011:
        _, p, end = _representation(data, _FAC_GENERAL, "face")
        if p + _FAC_INFO.size > end:
            raise FormatError("the face representation is truncated")
        landmarks = _FAC_INFO.unpack_from(data, p)[0]
        p += _FAC_INFO.size + 8 * landmarks + _FAC_IMAGE.size
        if p + 4 > end:
            raise FormatError("the face representation is truncated")
        (n,) = struct.unpack_from(">I", data, p)
        image = data[p + 4 : p + 4 + n]
        if p + 4 + n > end:
            raise FormatError("the face image runs past its representation")
    elif data[:8] == _FAC_2005:
        # general header 14 bytes, facial record header 20, feature points 8 each, image info 12
        if len(data) < 14 + 20 + 12:
            raise FormatError("the face record is truncated")
        (points,) = struct.unpack_from(">H", data, 14 + 4)
        (block,) = struct.unpack_from(">I", data, 14)
        start = 14 + 20 + 8 * points + 12
        image = data[start : 14 + block]
    else:
        raise FormatError("the face BDB is not an ISO/IEC 19794-5 record")
    if not (
        image.startswith(b"\xff\xd8\xff")
        or image.startswith(b"\x89PNG")
        or image.startswith(b"\x00\x00\x00\x0cjP  ")
        or image.startswith(b"\xff\x4f\xff\x51")
    ):
        raise FormatError("the face record's image is not JPEG, JPEG 2000 or PNG")
    return image
