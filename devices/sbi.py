"""MOSIP SBI devices: the client side of the Secure Biometric Interface (formerly "MOSIP Device
Service", MDS), and the slap segmentation a 4-4-2 reader's firmware does.

A certified device runs an HTTP service on 127.0.0.1, one port in 4501-4600, answering the
spec's own HTTP methods with JSON bodies: ``MOSIPDISC /device`` (discovery, unsigned),
``MOSIPDINFO /info`` (device info: a JWS signed by the device key, holding a digital id signed
by the device key (L0) or the FTM chip key (L1)), ``RCAPTURE /capture`` (registration capture:
each biometric a JWS over its ISO record, ``bioValue``, chained by ``hash``) and ``STREAM
/stream`` (an M-JPEG preview). ``CAPTURE`` (authentication, encrypted to MOSIP's key) is for
authentication devices and is not used here. Wire spec: MOSIP's "MDS specification" 0.9.5 /
SBI 1.0 (``specVersion`` "0.9.5"); "SBI 2.0" is the L1 level (signing inside the FTM chip) and
speaks the same protocol. Fields and codes follow the published spec, MOSIP's compliance
toolkit schemas (every number travels as a string) and, for codes the spec leaves to vendors,
MOSIP's mock MDS (mosip-mock-services): 701/801 capture timeout, 703/803 capture in progress.

What is checked here, and raises ``untrusted_device`` when it fails:

- every JWS (the digital id inside device info and inside each capture, the device info, each
  capture's ``data``): RS256 (RSA >= 2048 bits) or ES256 (P-256); its signing certificate is
  ``x5c[0]``, which must chain (through the optional further ``x5c`` entries) to a CA of the
  trust store, every certificate of the chain valid now;
- each capture: the ``transactionId`` sent, the purpose and environment asked for, the digital
  id's type and serial against ``bioType`` and ``deviceCode``, a ``bioSubType`` asked for (never
  an exception, never twice), and the hash chain: ``hash`` = SHA-256(previous hash ||
  SHA-256(ISO record)), upper-case hex, starting from SHA-256 of the empty string.

Other failures carry the codes the kiosk knows: ``busy`` (the device says it is busy or not
ready, spec 110/111), ``device_lost`` (connection refused, reset or closed mid-answer),
``timeout`` (no answer in time, or the device's own capture timeout), ``no_finger`` /
``no_face`` (spec 101), ``device_error`` (an answer that is not the protocol: not JSON, a
corrupt ISO record, a missing field).

ISO records: fingers as ISO/IEC 19794-4:2005 (:class:`biometrics.fingerprint.FingerImage`)
or 19794-4:2011 (what MOSIP's bio-utils write: the image behind a 4-byte length); faces as
ISO/IEC 19794-5:2011 or 2005 (JPEG, JPEG 2000 or PNG inside); irises as ISO/IEC 19794-6:2011,
whose image is found by its JPEG 2000 / PNG / JPEG signature.

What could not be verified without a certified device and MOSIP's servers:

- certificates: the device-provider CA, FTM root and chip certificates a MOSIP management
  server and an FTM provider issue; the trust store is whatever the technician installs
  (``sbi-ca/``); a real device's chain may need the FTM root *and* the device-provider CA
  there (the digital id and the data are signed by different keys on an L1 device);
- revocation: no CRL or OCSP is consulted (the spec defines none for devices);
- the device's clock (``timestamp``, digital id ``dateTime``) is not checked;
- ``CAPTURE`` (authentication): its AES-GCM encryption of ``bioValue`` to MOSIP's key and
  ``sessionKey`` / ``thumbprint`` are not implemented: a registration kiosk never needs them;
- vendor behaviour: which errors a given vendor returns when, the STREAM framing of real
  devices (the parser accepts the mock's boundary quirk), single-finger ("Single") and iris
  devices (handled as the spec describes, never run against one);
- the NFIQ 2 scale of ``qualityScore`` / ``requestedScore`` on real firmware.

No biometric data is logged: errors name fields, never their values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn

import cv2
import httpx
import jwt
import numpy as np
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from biometrics.fingerprint import FingerImage, FingerImageError
from devices.camera import Camera, CameraError, Frame
from devices.exceptions import DeviceError
from devices.fingerprint import (
    POSITIONS,
    DeviceInfo,
    FingerprintReader,
    FingerprintReaderError,
)

SBI_PORTS: Final = range(4501, 4601)
SPEC_VERSION: Final = "0.9.5"
PURPOSE: Final = "Registration"
# the previousHash of a transaction's first capture: SHA-256 of the empty UTF-8 string
EMPTY_HASH: Final = hashlib.sha256(b"").hexdigest().upper()
# MOSIP's bioSubType of each ISO finger position
FINGER_NAMES: Final[dict[int, str]] = {
    1: "Right Thumb",
    2: "Right IndexFinger",
    3: "Right MiddleFinger",
    4: "Right RingFinger",
    5: "Right LittleFinger",
    6: "Left Thumb",
    7: "Left IndexFinger",
    8: "Left MiddleFinger",
    9: "Left RingFinger",
    10: "Left LittleFinger",
}
_POSITION_OF: Final = {name: p for p, name in FINGER_NAMES.items()}
# a slap reader's deviceSubId (1 left slap, 2 right slap, 3 two thumbs) and the ISO positions
# of its fingers, left to right as the slap image shows them (the ink-print convention: the
# right index finger leftmost, the left little finger leftmost, the left thumb left)
SLAP_FINGERS: Final[dict[int, tuple[int, ...]]] = {
    1: (10, 9, 8, 7),
    2: (2, 3, 4, 5),
    3: (6, 1),
}
_SLAP_OF: Final = {p: sub for sub, fingers in SLAP_FINGERS.items() for p in fingers}

_JWS_ALGORITHMS: Final = ("RS256", "ES256")
_MAX_ANSWER = 64 * 1024 * 1024  # an RCAPTURE of four JPEG 2000 fingers is about 1 MB
_MAX_FRAME = 8 * 1024 * 1024
_MAX_IMAGE_SIDE = 4096
_GRACE = 2.0  # seconds a device may take beyond the capture timeout to answer
_INFO_TIMEOUT = 5.0
# the device's errorCode -> this package's code ("101": nothing there, by modality)
_ERRORS: Final[dict[str, str]] = {
    "100": "untrusted_device",  # device not registered
    "102": "device_error",  # technical error during extraction
    "103": "untrusted_device",  # device tamper detected
    "104": "device_error",  # unable to connect to the management server
    "105": "device_error",  # image orientation error
    "106": "device_lost",  # device not found
    "107": "untrusted_device",  # device public key expired
    "108": "device_error",  # domain public key missing
    "109": "device_error",  # requested number of biometrics not supported
    "110": "busy",  # device is not ready
    "111": "busy",  # device is busy
    "112": "device_error",  # invalid transaction id
    "605": "device_lost",  # mock MDS: no such device for STREAM
    "609": "timeout",  # mock MDS: live stream timeout
    "701": "timeout",  # mock MDS: RCAPTURE timeout
    "703": "busy",  # mock MDS: RCAPTURE already in progress
    "705": "device_lost",  # mock MDS: no such device for RCAPTURE
    "801": "timeout",  # mock MDS: CAPTURE timeout
    "803": "busy",  # mock MDS: CAPTURE already in progress
}
_NOTHING: Final = {"Finger": "no_finger", "Face": "no_face", "Iris": "no_iris"}
_DEVICE_KIND: Final = {"Finger": "fingerprint", "Face": "camera", "Iris": "iris"}


class SBIError(DeviceError):
    """An SBI device failed or cannot be trusted; ``code`` says how (``busy``,
    ``device_lost``, ``timeout``, ``untrusted_device``, ``no_finger``, ``no_face``,
    ``device_error``), ``sbi_code`` is the device's own errorCode when it gave one."""

    code = "device_error"

    def __init__(self, message: str, code: str | None = None, sbi_code: str | None = None):
        super().__init__(message, code)
        self.sbi_code = sbi_code


# ------------------------------------------------------------------------------ what answers
@dataclass(frozen=True)
class DigitalId:
    """A device's digital id (the spec's "Digital ID" JSON)."""

    serial_no: str
    make: str
    model: str
    type: str  # Finger, Face, Iris
    device_sub_type: str  # Slap, Single, Touchless, Double, Full face
    device_provider: str
    device_provider_id: str
    date_time: str

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> DigitalId:
        return cls(
            _text(d, "serialNo"),
            _text(d, "make"),
            _text(d, "model"),
            _text(d, "type"),
            _text(d, "deviceSubType"),
            _text(d, "deviceProvider"),
            _text(d, "deviceProviderId"),
            _text(d, "dateTime", required=False),
        )


@dataclass(frozen=True)
class SBIDevice:
    """One device an SBI service offers: from discovery (``verified`` False: discovery is
    unsigned by the spec) or from signed device info (``verified`` True, ``firmware`` and
    ``env`` known)."""

    port: int
    device_id: str
    status: str  # Ready, Busy, Not Ready, Not Registered
    certification: str  # L0, L1
    service_version: str
    sub_ids: tuple[int, ...]
    callback_id: str
    digital_id: DigitalId
    device_code: str
    spec_versions: tuple[str, ...]
    purpose: str  # Registration, Auth ("" when not registered)
    firmware: str = ""
    env: str = ""
    verified: bool = False
    error_code: str = "0"

    def device_info(self) -> DeviceInfo:
        """What the daemon reports about this device (``sbi:<port>``)."""
        d = self.digital_id
        kind = _DEVICE_KIND.get(d.type, d.type.lower())
        firmware = self.firmware if self.verified else "unverified"
        return DeviceInfo(kind, f"sbi:{self.port}", d.make, d.model, d.serial_no, firmware)


@dataclass(frozen=True)
class Capture:
    """One verified biometric of an RCAPTURE answer: its ISO record and what the signed data
    says about it. ``image()`` decodes the record."""

    bio_type: str  # Finger, Face, Iris
    bio_sub_type: str  # e.g. "Left IndexFinger"; "" for a face
    record: bytes = field(repr=False)  # ISO/IEC 19794-4 / -5 / -6, as signed (never logged)
    quality: float  # qualityScore, 0-100
    requested_score: float
    hash: str  # the chain's hash after this capture (the next capture's previousHash)
    timestamp: str
    digital_id: DigitalId

    def image(self) -> np.ndarray:
        """The record's image: a finger grey-scale at 500 dpi (dark ridges on light), a face
        RGB, an iris grey-scale. SBIError ``device_error`` when the record is unusable."""
        if self.bio_type == "Finger":
            finger = _finger_record(self.record)
            want = _POSITION_OF.get(self.bio_sub_type, 0)
            if finger.position not in (0, want):
                raise SBIError(
                    f"the {self.bio_sub_type} record says finger position {finger.position}",
                    "untrusted_device",
                )
            return _at_500_dpi(finger)
        if self.bio_type == "Face":
            return _face_record(self.record)
        if self.bio_type == "Iris":
            return _iris_record(self.record)
        raise SBIError(f"unknown biometric type {self.bio_type[:20]!r}", "device_error")


def _text(d: dict[str, Any], key: str, required: bool = True) -> str:
    value = d.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SBIError(f"the device's answer has no usable {key!r}", "device_error")
    return str(value)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SBIError(f"the device's {what} is not a JSON object", "device_error")
    return value


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SBIError(f"the device's {what} is not JSON", "device_error") from exc


def _b64url(text: Any, what: str) -> bytes:
    """Strict base64url (padding optional), as the spec writes payloads and bioValue."""
    if not isinstance(text, str) or not text:
        raise SBIError(f"the device's {what} is missing", "device_error")
    try:
        raw = text.encode("ascii") + b"=" * (-len(text) % 4)
        return base64.b64decode(raw, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SBIError(f"the device's {what} is not base64url", "device_error") from exc


def _error_of(entry: dict[str, Any]) -> tuple[str, str]:
    err = entry.get("error")
    if not isinstance(err, dict):
        return "0", ""
    code = str(err.get("errorCode", "0")).strip() or "0"
    info = err.get("errorInfo")
    return code, (str(info)[:120] if info is not None else "")


def _raise_device_error(code: str, info: str, bio_type: str = "") -> NoReturn:
    """The device said ``code``: raise the matching SBIError."""
    ours = _NOTHING.get(bio_type, "no_biometric") if code == "101" else _ERRORS.get(code)
    raise SBIError(
        f"the SBI device answered error {code[:8]}" + (f": {info}" if info else ""),
        ours or "device_error",
        code[:8],
    )


# ------------------------------------------------------------------------- trust and JWS
TrustSource = str | Path | Iterable[x509.Certificate | str | Path] | None
_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


class _TrustStore:
    """The device-provider / FTM CA certificates a device's signing certificate must chain
    to. A folder: its ``sbi-ca`` subfolder when it has one (the daemon's trust folder also
    holds the passports' CSCAs, which must never vouch for a biometric device), else the
    folder itself; ``*.pem``, ``*.crt``, ``*.cer``, ``*.der`` files."""

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        self.anchors = list(anchors)

    @classmethod
    def load(cls, source: TrustSource) -> _TrustStore:
        if source is None:
            return cls([])
        if isinstance(source, str | Path):
            folder = Path(source)
            if (folder / "sbi-ca").is_dir():
                folder = folder / "sbi-ca"
            if not folder.is_dir():
                raise SBIError(f"the SBI trust folder {folder} does not exist", "untrusted_device")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _CERT_SUFFIXES)
            return cls([c for p in files for c in _read_certificates(p)])
        out: list[x509.Certificate] = []
        for item in source:
            out.extend([item] if isinstance(item, x509.Certificate) else _read_certificates(item))
        return cls(out)

    def verify(self, leaf: x509.Certificate, others: Sequence[x509.Certificate]) -> None:
        """Raise SBIError ``untrusted_device`` unless ``leaf`` chains to an anchor, every
        certificate of the chain valid now."""
        now = dt.datetime.now(dt.UTC)
        current = leaf
        for _ in range(5):  # leaf, at most three intermediates, the anchor
            _valid_at(current, now)
            if any(current == a for a in self.anchors):
                return  # a pinned certificate
            for anchor in self.anchors:
                if anchor.subject == current.issuer and _issued_by(current, anchor):
                    _valid_at(anchor, now)
                    return
            nxt = next(
                (c for c in others if c.subject == current.issuer and _issued_by(current, c)),
                None,
            )
            if nxt is None:
                break
            current = nxt
        raise SBIError(
            "the device's certificate does not chain to a trusted device CA", "untrusted_device"
        )


def _read_certificates(path: str | Path) -> list[x509.Certificate]:
    try:
        raw = Path(path).read_bytes()
        if b"-----BEGIN CERTIFICATE-----" in raw:
            return x509.load_pem_x509_certificates(raw)
        return [x509.load_der_x509_certificate(raw)]
    except (OSError, ValueError) as exc:
        raise SBIError(f"{path}: not a readable certificate", "untrusted_device") from exc


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SBIError(
            "a certificate of the device's chain is outside its validity period",
            "untrusted_device",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return True  # an old CA without the extension: the trust store says it is one


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if not _is_ca(issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _verify_jws(token: Any, trust: _TrustStore, what: str) -> dict[str, Any]:
    """The JSON payload of a compact JWS whose signature and certificate chain verify;
    SBIError ``untrusted_device`` otherwise."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise SBIError(f"the device's {what} is not signed", "untrusted_device")
    head_b64 = token.split(".", 1)[0]
    try:
        header = json.loads(_b64url(head_b64, f"{what} header"))
    except (SBIError, ValueError, UnicodeDecodeError) as exc:
        raise SBIError(
            f"the device's {what} has no readable JWS header", "untrusted_device"
        ) from exc
    if not isinstance(header, dict) or header.get("alg") not in _JWS_ALGORITHMS:
        raise SBIError(f"the device's {what} is not signed RS256 or ES256", "untrusted_device")
    alg = str(header["alg"])
    chain = header.get("x5c")
    chain = [chain] if isinstance(chain, str) else chain
    if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
        raise SBIError(f"the device's {what} carries no certificate (x5c)", "untrusted_device")
    try:
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in chain]
    except (binascii.Error, ValueError) as exc:
        raise SBIError(
            f"the device's {what} certificate is unreadable", "untrusted_device"
        ) from exc
    trust.verify(certs[0], certs[1:])
    try:
        usage = certs[0].extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise SBIError(f"the device's {what} certificate may not sign", "untrusted_device")
    except x509.ExtensionNotFound:
        pass
    key = certs[0].public_key()
    fits = (alg == "RS256" and isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048) or (
        alg == "ES256"
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
    )
    if not fits or not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise SBIError(f"the device's {what} key does not fit {alg}", "untrusted_device")
    try:
        payload = jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])["payload"]
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise SBIError(
            f"the device's {what} signature does not verify", "untrusted_device"
        ) from exc
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SBIError(f"the device's signed {what} is not JSON", "device_error") from exc
    return _object(body, what)


def _unsigned_payload(token: Any, what: str) -> dict[str, Any]:
    """The payload of an unsigned (discovery, unregistered) or signed token, not verified."""
    if not isinstance(token, str):
        raise SBIError(f"the device's {what} is missing", "device_error")
    part = token.split(".")[1] if token.count(".") == 2 else token
    return _object(_json(_b64url(part, what), what), what)


# ----------------------------------------------------------------------------- ISO records
_JPEG, _JP2, _J2K, _PNG = b"\xff\xd8\xff", b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51", b"\x89PNG"
_SIGNATURES: Final = (_JPEG, _JP2, _J2K, _PNG)


def _decode_image(data: bytes, mode: str, what: str) -> np.ndarray:
    """JPEG / JPEG 2000 / PNG bytes as a ``mode`` ("L" or "RGB") array, size-checked."""
    from PIL import Image

    if not data.startswith(_SIGNATURES):
        raise SBIError(f"the {what} image is not JPEG, JPEG 2000 or PNG", "device_error")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if max(im.size) > _MAX_IMAGE_SIDE:
                raise SBIError(f"the {what} image is too large", "device_error")
            return np.asarray(im.convert(mode)).copy()
    except SBIError:
        raise
    except Exception as exc:  # the codecs raise OSError, ValueError, SyntaxError...
        raise SBIError(f"the {what} image is corrupt", "device_error") from exc


_FIR_2011: Final = b"FIR\x00020\x00"
_FIR_GENERAL = struct.Struct(">8sIHBB")  # 16 bytes
_FIR_TAIL = struct.Struct(">BBBHHHHBBBHH")  # position ... line lengths: 19 bytes


def _finger_record(data: bytes) -> FingerImage:
    """A 19794-4 record of one finger, 2005 ("010") or 2011 ("020")."""
    try:
        if data[:8] == _FIR_2011:
            return _finger_2011(data)
        return FingerImage.from_iso19794_4(data)
    except FingerImageError as exc:
        raise SBIError(f"the finger image record is unusable: {exc}", "device_error") from exc


def _finger_2011(data: bytes) -> FingerImage:
    bad = SBIError("the ISO/IEC 19794-4:2011 finger record is truncated", "device_error")
    if len(data) < _FIR_GENERAL.size + 4 + 18 + _FIR_TAIL.size:
        raise bad
    _, length, count, cert, _ = _FIR_GENERAL.unpack_from(data)
    at = _FIR_GENERAL.size
    (rep_len,) = struct.unpack_from(">I", data, at)
    end = at + rep_len
    if length != len(data) or count < 1 or end > len(data):
        raise SBIError("the 19794-4:2011 finger record's lengths disagree", "device_error")
    p = at + 4 + 9 + 5  # length, capture date and time, device technology / vendor / type
    blocks = data[p]
    quality = data[p + 1] if blocks else 254
    p += 1 + 5 * blocks
    if cert:
        p += 1 + 3 * data[p]
    if p + _FIR_TAIL.size > end:
        raise bad
    position, _, units, _, _, hres, vres, depth, code, _, w, h = _FIR_TAIL.unpack_from(data, p)
    payload = data[p + _FIR_TAIL.size : end]
    # bio-utils writes the image data's length first; some writers put the image at once
    (n,) = struct.unpack_from(">I", payload) if len(payload) >= 4 else (0,)
    if 0 < n <= len(payload) - 4 and not payload.startswith(_SIGNATURES):
        payload = payload[4 : 4 + n]
    dpi = hres if units == 1 else round(hres * 2.54)
    if depth != 8 or hres != vres or not 250 <= dpi <= 1000 or not 0 < max(w, h) <= 2048:
        raise SBIError("the finger record's image is not 8-bit at 250-1000 ppi", "device_error")
    if code in (0, 1):
        if len(payload) != w * h:
            raise bad
        pixels = np.frombuffer(payload, np.uint8).reshape(h, w).copy()
    elif code == 2:
        try:
            import _wsq

            raw, ww, hh, _ = _wsq.decompress(payload)
            pixels = np.frombuffer(raw, np.uint8).reshape(hh, ww).copy()
        except Exception as exc:  # the WSQ codec raises bare exceptions
            raise SBIError("the finger's WSQ image is corrupt", "device_error") from exc
    elif code in (3, 4, 5, 6):
        pixels = _decode_image(payload, "L", "finger")
    else:
        raise SBIError(f"unsupported finger image compression {code}", "device_error")
    if pixels.shape != (h, w):
        raise SBIError("the finger image's size disagrees with its header", "device_error")
    return FingerImage(pixels, position, dpi, quality)


def _at_500_dpi(finger: FingerImage) -> np.ndarray:
    if finger.dpi == 500:
        return np.asarray(finger.pixels, np.uint8)
    f = 500 / finger.dpi
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(finger.pixels, None, fx=f, fy=f, interpolation=interp))


_FAC_2011, _FAC_2005 = b"FAC\x00030\x00", b"FAC\x00010\x00"
_FAC_GENERAL = struct.Struct(">8sIHBH")  # 17 bytes


def _face_record(data: bytes) -> np.ndarray:
    """The RGB image of the first face of a 19794-5 record (2011 or 2005)."""
    bad = SBIError("the ISO/IEC 19794-5 face record is truncated", "device_error")
    if data[:8] == _FAC_2011:
        if len(data) < _FAC_GENERAL.size + 4 + 19 + 17 + 11 + 4:
            raise bad
        _, length, count, cert, _ = _FAC_GENERAL.unpack_from(data)
        at = _FAC_GENERAL.size
        (rep_len,) = struct.unpack_from(">I", data, at)
        end = at + rep_len
        if length != len(data) or count < 1 or end > len(data):
            raise SBIError("the 19794-5 face record's lengths disagree", "device_error")
        p = at + 4 + 9 + 5
        p += 1 + 5 * data[p]  # quality blocks
        if cert:
            p += 1 + 3 * data[p]
        if p + 17 > end:
            raise bad
        (landmarks,) = struct.unpack_from(">H", data, p)
        p += 17 + 8 * landmarks + 11  # facial information, landmarks, image information
        if p + 4 > end:
            raise bad
        (n,) = struct.unpack_from(">I", data, p)
        if p + 4 + n > end:
            raise bad
        image = data[p + 4 : p + 4 + n]
    elif data[:8] == _FAC_2005:
        # general header 14 bytes, facial record header 20, feature points 8 each, image 12
        if len(data) < 14 + 20 + 12:
            raise bad
        (block,) = struct.unpack_from(">I", data, 14)
        (points,) = struct.unpack_from(">H", data, 18)
        start, stop = 14 + 20 + 8 * points + 12, 14 + block
        if stop > len(data) or start >= stop:
            raise bad
        image = data[start:stop]
    else:
        raise SBIError("the face record is not ISO/IEC 19794-5", "device_error")
    return _decode_image(image, "RGB", "face")


def _iris_record(data: bytes) -> np.ndarray:
    """The grey-scale image of a 19794-6:2011 record's first iris (located by its image
    signature: not run against a real iris device)."""
    if data[:4] != b"IIR\x00" or len(data) < 16 + 4:
        raise SBIError("the iris record is not ISO/IEC 19794-6", "device_error")
    (length,) = struct.unpack_from(">I", data, 8)
    if length != len(data):
        raise SBIError("the 19794-6 iris record's length disagrees", "device_error")
    found = [i for sig in _SIGNATURES if (i := data.find(sig, 16)) >= 0]
    if not found:
        raise SBIError("the iris record holds no JPEG 2000, PNG or JPEG image", "device_error")
    return _decode_image(data[min(found) :], "L", "iris")


# ------------------------------------------------------------------------ slap segmentation
_TIP_CM = 2.5  # a fingertip image: the first 2.5 cm of the finger, at most
_MIN_RIDGE_CONTRAST = 15.0  # grey levels of local standard deviation: ridges, not noise
_FINGER_WIDTH_CM = 1.7


def segment_slap(image: np.ndarray, count: int, dpi: int = 500) -> list[np.ndarray]:
    """The ``count`` fingers of a slap image (grey-scale, dark ridges on light; 4 fingers or
    2 thumbs side by side, slightly rotated), left to right, each turned upright and cropped
    to its fingertip: the top phalanx, cut at the first crease, at most 2.5 cm long. What a
    4-4-2 reader's firmware does before it sends one record per finger.

    Fingers are the ridge-textured regions (local contrast), one column each; two fingers that
    touch are split at the narrowest point between them. Raises FingerprintReaderError
    ``no_finger`` when it does not find exactly ``count`` fingers (a finger missing, or a
    blank platen), ValueError for an image that is not 2-D uint8.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("a slap image is a 2-D uint8 grey-scale array")
    if not 1 <= count <= 4:
        raise ValueError("a slap holds 1 to 4 fingers")
    px_cm = dpi / 2.54
    scale = 4
    h, w = image.shape
    sh, sw = h // scale, w // scale
    if min(sh, sw) < 16:
        raise FingerprintReaderError("the slap image is too small", "no_finger")
    f = image.astype(np.float32)
    win = max(3, round(9 * dpi / 500)) | 1  # about one ridge period
    mean = cv2.blur(f, (win, win))
    std = np.sqrt(np.maximum(cv2.blur(f * f, (win, win)) - mean * mean, 0))
    small = cv2.resize(std[: sh * scale, : sw * scale], (sw, sh), interpolation=cv2.INTER_AREA)
    level = max(_MIN_RIDGE_CONTRAST, 0.35 * float(np.percentile(small, 99)))
    rough: np.ndarray = (small > level).astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    rough = cv2.morphologyEx(rough, cv2.MORPH_CLOSE, disk)
    rough = cv2.morphologyEx(rough, cv2.MORPH_OPEN, disk)
    contours, _ = cv2.findContours(rough, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros((sh, sw), np.uint8)
    cv2.drawContours(mask, contours, -1, 1, thickness=-1)  # holes filled
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = 0.5 * px_cm**2 / scale**2  # half a square centimetre
    parts = [
        (labels == i, int(stats[i, cv2.CC_STAT_LEFT]), int(stats[i, cv2.CC_STAT_WIDTH]))
        for i in range(1, n)
        if stats[i, cv2.CC_STAT_AREA] >= min_area
    ]
    fingers = _split_touching(_columns(parts), count, _FINGER_WIDTH_CM * px_cm / scale)
    if len(fingers) != count:
        raise FingerprintReaderError(
            f"{len(fingers)} finger(s) found on the slap, {count} expected", "no_finger"
        )
    fingers.sort(key=lambda m: float(np.nonzero(m)[1].mean()))
    small_img = cv2.resize(
        image[: sh * scale, : sw * scale], (sw, sh), interpolation=cv2.INTER_AREA
    )
    free = cv2.dilate(mask, disk, iterations=3) == 0
    background = int(np.median(small_img[free])) if free.any() else 255
    return [_fingertip(image, m, scale, px_cm, background) for m in fingers]


def _columns(parts: list[tuple[np.ndarray, int, int]]) -> list[np.ndarray]:
    """Regions one above the other (a fingertip and the phalanges below it) are one finger."""
    groups: list[tuple[np.ndarray, int, int]] = []  # mask, left, right
    for mask, left, width in sorted(parts, key=lambda p: p[1] + p[2] / 2):
        right = left + width
        for i, (gm, gl, gr) in enumerate(groups):
            overlap = min(right, gr) - max(left, gl)
            if overlap >= 0.4 * min(width, gr - gl):
                groups[i] = (gm | mask, min(gl, left), max(gr, right))
                break
        else:
            groups.append((mask, left, right))
    return [g[0] for g in groups]


def _split_touching(fingers: list[np.ndarray], count: int, width: float) -> list[np.ndarray]:
    """Split regions wider than a finger where their column profile is narrowest, until
    there are ``count`` (touching fingers merge into one region)."""
    fingers = list(fingers)
    while fingers and len(fingers) < count:
        spans = [np.nonzero(m.any(axis=0))[0] for m in fingers]
        i = max(
            range(len(fingers)), key=lambda k: spans[k][-1] - spans[k][0] if len(spans[k]) else 0
        )
        lo, hi = int(spans[i][0]), int(spans[i][-1]) + 1
        if hi - lo < 1.5 * width:
            break
        profile = cv2.GaussianBlur(
            fingers[i][:, lo:hi].sum(axis=0).astype(np.float32).reshape(1, -1), (0, 0), 2
        ).ravel()
        margin = int(0.35 * width)
        if hi - lo <= 2 * margin:
            break
        cut = margin + int(np.argmin(profile[margin : hi - lo - margin]))
        if profile[cut] > 0.75 * float(profile.max()):
            break
        left, right = fingers[i].copy(), fingers[i].copy()
        left[:, lo + cut :] = False
        right[:, : lo + cut] = False
        fingers[i : i + 1] = [left, right]
    return fingers


def _axis_angle(mask: np.ndarray) -> float | None:
    """How far (degrees, clockwise as shown: the top to the right) a region's long axis leans
    from the vertical; None for a region too round to tell."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    mu20, mu02, mu11 = m["mu20"], m["mu02"], m["mu11"]
    spread = float(np.hypot(2 * mu11, mu20 - mu02))
    major, minor = (mu20 + mu02 + spread) / 2, (mu20 + mu02 - spread) / 2
    if minor <= 0 or major / minor < 1.3**2:
        return None
    theta = 0.5 * float(np.degrees(np.arctan2(2 * mu11, mu20 - mu02)))  # from the x axis
    lean = theta % 180.0 - 90.0
    return lean if abs(lean) <= 35.0 else None


def _fingertip(
    image: np.ndarray, finger: np.ndarray, scale: int, px_cm: float, background: int
) -> np.ndarray:
    """One finger region (a mask at 1/scale) -> its upright fingertip image."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(finger.astype(np.uint8), connectivity=8)
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= 0.15 * stats[1:, 4].max()]
    tip_label = min(big, key=lambda i: stats[i, cv2.CC_STAT_TOP])  # the top phalanx
    tip = labels == tip_label
    angle = _axis_angle(finger)
    if angle is None:
        angle = _axis_angle(tip) or 0.0
    h, w = image.shape
    full = np.zeros((h, w), np.uint8)
    up = np.repeat(np.repeat(tip.astype(np.uint8), scale, axis=0), scale, axis=1)
    full[: up.shape[0], : up.shape[1]] = up
    ys, xs = np.nonzero(tip)
    pad = round(0.8 * px_cm)
    y0, y1 = max(int(ys.min()) * scale - pad, 0), min((int(ys.max()) + 1) * scale + pad, h)
    x0, x1 = max(int(xs.min()) * scale - pad, 0), min((int(xs.max()) + 1) * scale + pad, w)
    window, wmask = image[y0:y1, x0:x1], full[y0:y1, x0:x1]
    centre = (float(xs.mean()) * scale - x0, float(ys.mean()) * scale - y0)
    turn = cv2.getRotationMatrix2D(centre, angle, 1.0)  # counter-clockwise: upright
    size = (x1 - x0, y1 - y0)
    upright = cv2.warpAffine(window, turn, size, flags=cv2.INTER_LINEAR, borderValue=(background,))
    umask = cv2.warpAffine(wmask, turn, size, flags=cv2.INTER_NEAREST, borderValue=(0,))
    ys, xs = np.nonzero(umask)
    if not len(ys):
        raise FingerprintReaderError("a finger vanished while segmenting", "no_finger")
    margin = round(0.1 * px_cm)
    top = max(int(ys.min()) - margin, 0)
    bottom = min(int(ys.max()), int(ys.min()) + round(_TIP_CM * px_cm)) + margin
    left, right = max(int(xs.min()) - margin, 0), int(xs.max()) + margin
    keep = cv2.dilate(umask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1,) * 2))
    crop = upright[top:bottom, left:right].copy()
    crop[keep[top:bottom, left:right] == 0] = background
    if min(crop.shape) < 64:
        raise FingerprintReaderError("a finger on the slap is too small to use", "no_finger")
    return crop[:1024, :1024]


# ----------------------------------------------------------------------------------- client
def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_client(base_url: str = "") -> httpx.Client:
    # trust_env False: no proxy from the environment may ever see a device's traffic
    return httpx.Client(base_url=base_url, trust_env=False, follow_redirects=False)


class SBIClient:
    """Talks to the SBI service on ``host:port``: discovery, signed device info, registration
    capture (every signature and the hash chain verified), the M-JPEG preview.

    ``trust``: the CA certificates a device's signing certificate must chain to (a folder, or
    certificates / certificate files). ``timeout``: seconds a capture may take (the request's
    ``timeout``; the answer may come ``_GRACE`` seconds later). ``env``: the environment sent
    with captures (None: the one the device's signed info names). Errors: SBIError."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        trust: TrustSource = None,
        timeout: float = 30.0,
        env: str | None = None,
        app_name: str = "rnp-kiosk",
    ) -> None:
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"not a port: {port}")
        self.port, self.host, self.timeout = int(port), host, float(timeout)
        self.trust = _TrustStore.load(trust)
        self.env = env
        self._app = app_name
        self._envs: dict[str, str] = {}  # device id -> its env, from verified device info
        self._http = _http_client(f"http://{host}:{self.port}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> SBIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------- plumbing
    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        return _request(self._http, method, path, body, timeout, self._app, self.port)

    # --------------------------------------------------------------------------- the API
    def discover(self, type: str = "Biometric Device") -> list[SBIDevice]:
        """``MOSIPDISC``: the devices of ``type`` ("Biometric Device": all, "Finger", "Face",
        "Iris") this service offers. Unverified: the spec does not sign discovery."""
        answer = self._call("MOSIPDISC", "/device", {"type": type}, _INFO_TIMEOUT)
        return _discovered(answer, self.port)

    def info(self) -> list[SBIDevice]:
        """``MOSIPDINFO``: every device with its signed info, verified (SBIError
        ``untrusted_device`` when a signature or certificate chain fails). A device that is
        not registered (unsigned info, error 100) comes back with ``verified`` False."""
        answer = self._call("MOSIPDINFO", "/info", None, _INFO_TIMEOUT)
        if not isinstance(answer, list):
            raise SBIError("the device info answer is not a list", "device_error")
        out = []
        for entry in answer:
            entry = _object(entry, "device info entry")
            code, info = _error_of(entry)
            token = entry.get("deviceInfo")
            if token is None or token == "":
                if code == "0":
                    raise SBIError("a device info entry has no deviceInfo", "device_error")
                _raise_device_error(code, info)
            if isinstance(token, str) and token.count(".") == 2:
                d = _verify_jws(token, self.trust, "device info")
                digital = _verify_jws(d.get("digitalId"), self.trust, "digital id")
                device = _device(d, self.port, DigitalId._from_json(digital), True, code)
                if device.device_code != device.digital_id.serial_no:
                    raise SBIError(
                        "the device info's deviceCode is not its digital id's serial",
                        "untrusted_device",
                    )
                self._envs[device.device_id] = device.env
            elif isinstance(token, str):  # not registered: the spec sends it unsigned
                d = _unsigned_payload(token, "device info")
                digital = _unsigned_payload(d.get("digitalId"), "digital id")
                device = _device(d, self.port, DigitalId._from_json(digital), False, code)
            else:
                raise SBIError("the device info is not a token", "device_error")
            out.append(device)
        return out

    def rcapture(
        self,
        device_id: str,
        bio_type: str,
        device_sub_id: int,
        bio_sub_types: Sequence[str] = (),
        exceptions: Sequence[str] = (),
        *,
        count: int | None = None,
        requested_score: int = 40,
        timeout: float | None = None,
        previous_hash: str = EMPTY_HASH,
        custom_opts: dict[str, str] | None = None,
    ) -> list[Capture]:
        """``RCAPTURE`` one modality: the verified captures, in the device's order.

        ``bio_sub_types``: what to capture (finger / iris names, none for a face);
        ``exceptions``: what is missing; ``count``: how many come back (default: the
        subtypes asked for, 1 for a face). ``previous_hash``: the chain's last hash (the
        previous capture's ``hash`` in the same transaction). Raises SBIError."""
        if bio_type not in ("Finger", "Face", "Iris"):
            raise ValueError(f"bio_type must be Finger, Face or Iris, not {bio_type!r}")
        wanted = [s for s in bio_sub_types if s not in exceptions]
        n = count if count is not None else (1 if bio_type == "Face" else len(wanted))
        if n < 1:
            raise ValueError("nothing to capture")
        try:
            prev = bytes.fromhex(previous_hash)
        except ValueError:
            raise ValueError("previous_hash must be hex") from None
        seconds = self.timeout if timeout is None else float(timeout)
        env = self.env or self._envs.get(device_id) or self._device_env(device_id)
        transaction = str(uuid.uuid4())
        request = {
            "env": env,
            "purpose": PURPOSE,
            "specVersion": SPEC_VERSION,
            "timeout": str(max(1, round(seconds * 1000))),
            "captureTime": _now(),
            "transactionId": transaction,
            "bio": [
                {
                    "type": bio_type,
                    "count": str(n),
                    "bioSubType": list(bio_sub_types),
                    "exception": list(exceptions),
                    "requestedScore": str(requested_score),
                    "deviceId": device_id,
                    "deviceSubId": str(device_sub_id),
                    "previousHash": previous_hash,
                }
            ],
            "customOpts": custom_opts,
        }
        answer = self._call("RCAPTURE", "/capture", request, seconds + _GRACE)
        items = _object(answer, "capture answer").get("biometrics")
        if not isinstance(items, list) or not items:
            raise SBIError("the capture answer holds no biometrics", "device_error")
        for item in items:
            code, info = _error_of(_object(item, "capture"))
            if code != "0":
                _raise_device_error(code, info, bio_type)
        captures: list[Capture] = []
        for item in items:
            capture = self._capture(item, bio_type, wanted, env, transaction, prev)
            if capture.bio_sub_type not in ("", "UNKNOWN") and any(
                c.bio_sub_type == capture.bio_sub_type for c in captures
            ):
                raise SBIError("the device sent one finger twice", "untrusted_device")
            captures.append(capture)
            prev = bytes.fromhex(capture.hash)
        if len(captures) != n:
            raise SBIError(
                f"the device sent {len(captures)} of the {n} biometrics asked for", "device_error"
            )
        return captures

    def _device_env(self, device_id: str) -> str:
        for device in self.info():
            if device.device_id == device_id and device.verified:
                return device.env
        raise SBIError(
            f"the SBI service has no registered device {device_id[:40]!r}", "device_lost"
        )

    def _capture(
        self,
        item: dict[str, Any],
        bio_type: str,
        wanted: list[str],
        env: str,
        transaction: str,
        prev: bytes,
    ) -> Capture:
        data = _verify_jws(item.get("data"), self.trust, "capture data")
        digital = DigitalId._from_json(_verify_jws(data.get("digitalId"), self.trust, "digital id"))

        def mismatch(what: str) -> SBIError:
            return SBIError(
                f"the signed capture's {what} is not the one asked for", "untrusted_device"
            )

        if data.get("transactionId") != transaction:
            raise mismatch("transactionId")
        if data.get("bioType") != bio_type or digital.type != bio_type:
            raise mismatch("biometric type")
        if data.get("purpose") != PURPOSE:
            raise mismatch("purpose")
        if data.get("env") != env:
            raise mismatch("environment")
        if str(data.get("deviceCode", digital.serial_no)) != digital.serial_no:
            raise mismatch("device code")
        sub = data.get("bioSubType")
        if bio_type == "Face":
            if sub not in (None, "", "null", "UNKNOWN"):
                raise mismatch("bioSubType")
            sub = ""
        elif not isinstance(sub, str) or sub not in wanted:
            raise mismatch("bioSubType")
        record = _b64url(data.get("bioValue"), "bioValue")
        expected = hashlib.sha256(prev + hashlib.sha256(record).digest()).hexdigest().upper()
        if str(item.get("hash", "")).upper() != expected:
            raise SBIError("the capture's hash chain is broken", "untrusted_device")
        return Capture(
            bio_type,
            sub,
            record,
            _score(data.get("qualityScore")),
            _score(data.get("requestedScore")),
            expected,
            str(data.get("timestamp", "")),
            digital,
        )

    def stream(
        self, device_id: str, device_sub_id: int, timeout: float | None = None
    ) -> Iterator[np.ndarray]:
        """``STREAM``: the device's preview frames (RGB arrays) as they come, until the device
        ends the stream (``timeout`` seconds asked of it; None: the device's default, 5
        minutes) or the iterator is closed. Raises SBIError."""
        body: dict[str, Any] = {"deviceId": device_id, "deviceSubId": str(device_sub_id)}
        if timeout is not None:
            body["timeout"] = str(max(1, round(timeout * 1000)))
        return _stream(self._http, body, self._app, self.port)


def _score(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _request(
    http: httpx.Client,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    timeout: float,
    app: str,
    port: int,
) -> Any:
    """One SBI call: its JSON answer (any HTTP status: the mock MDS answers errors with 405),
    the transport's failures mapped to SBIError codes."""
    content = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "EXT": app}
    try:
        with http.stream(
            method,
            path,
            content=content,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=2.0),
        ) as resp:
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > _MAX_ANSWER:
                    raise SBIError(f"the SBI device's {method} answer is too large", "device_error")
                chunks.append(chunk)
            status = resp.status_code
    except httpx.TimeoutException as exc:
        raise SBIError(
            f"the SBI device on port {port} did not answer {method} in time", "timeout"
        ) from exc
    except httpx.TransportError as exc:
        raise SBIError(
            f"lost the SBI device on port {port} during {method} ({type(exc).__name__})",
            "device_lost",
        ) from exc
    except httpx.HTTPError as exc:  # e.g. a body its Content-Encoding does not describe
        raise SBIError(
            f"the SBI device's {method} answer is not HTTP as it should be", "device_error"
        ) from exc
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SBIError(
            f"the SBI device's {method} answer (HTTP {status}) is not JSON", "device_error"
        ) from exc


def _device(
    d: dict[str, Any], port: int, digital: DigitalId, verified: bool, error_code: str
) -> SBIDevice:
    subs = d.get("deviceSubId")
    specs = d.get("specVersion")
    listed: list[Any] = subs if isinstance(subs, list) else [subs]
    try:
        sub_ids = tuple(int(s) for s in listed)
    except (TypeError, ValueError) as exc:
        raise SBIError("the device's deviceSubId is not a list of numbers", "device_error") from exc
    return SBIDevice(
        port=port,
        device_id=_text(d, "deviceId"),
        status=_text(d, "deviceStatus"),
        certification=_text(d, "certification", required=False),
        service_version=_text(d, "serviceVersion", required=False),
        sub_ids=sub_ids,
        callback_id=_text(d, "callbackId", required=False),
        digital_id=digital,
        device_code=_text(d, "deviceCode", required=False) or digital.serial_no,
        spec_versions=tuple(str(s) for s in specs) if isinstance(specs, list) else (),
        purpose=_text(d, "purpose", required=False),
        firmware=_text(d, "firmware", required=False),
        env=_text(d, "env", required=False),
        verified=verified,
        error_code=error_code,
    )


def _discovered(answer: Any, port: int) -> list[SBIDevice]:
    if not isinstance(answer, list):
        raise SBIError("the discovery answer is not a list", "device_error")
    out = []
    for entry in answer:
        entry = _object(entry, "discovery entry")
        code, info = _error_of(entry)
        if "deviceId" not in entry:
            if code == "503":  # mock MDS: no device of that type connected
                continue
            _raise_device_error(code, info)
        digital = DigitalId._from_json(_unsigned_payload(entry.get("digitalId"), "digital id"))
        out.append(_device(entry, port, digital, False, code))
    return out


def _stream(http: httpx.Client, body: dict[str, Any], app: str, port: int) -> Iterator[np.ndarray]:
    headers = {"Content-Type": "application/json", "EXT": app}
    try:
        with http.stream(
            "STREAM",
            "/stream",
            content=json.dumps(body).encode(),
            headers=headers,
            timeout=httpx.Timeout(10.0, connect=2.0),
        ) as resp:
            kind = resp.headers.get("content-type", "")
            if "multipart" not in kind.lower():
                raw = b""
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) > 65536:
                        raise SBIError("the stream's error answer is too large", "device_error")
                answer = _json(raw, "stream answer")
                code, info = _error_of(answer if isinstance(answer, dict) else {})
                if code == "0" and isinstance(answer, dict) and "errorCode" in answer:
                    code, info = str(answer["errorCode"]), str(answer.get("errorInfo", ""))[:120]
                _raise_device_error(code if code != "0" else "999", info)
            boundary = _boundary(kind)
            for jpeg in _parts(resp.iter_raw(), boundary):
                frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if frame is None:
                    raise SBIError("a preview frame is not an image", "device_error")
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    except httpx.TimeoutException as exc:
        raise SBIError(f"the SBI device on port {port} stopped streaming", "timeout") from exc
    except httpx.TransportError as exc:
        raise SBIError(
            f"lost the SBI device on port {port} while streaming ({type(exc).__name__})",
            "device_lost",
        ) from exc
    except httpx.HTTPError as exc:
        raise SBIError(
            "the SBI device's preview is not HTTP as it should be", "device_error"
        ) from exc


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary" and value.strip().strip('"'):
            # the mock MDS writes "boundary=--X" and then "--X" lines: match on "X" alone
            return value.strip().strip('"').lstrip("-").encode("latin-1")
    raise SBIError("the preview stream names no multipart boundary", "device_error")


def _parts(chunks: Iterable[bytes], token: bytes) -> Iterator[bytes]:
    """The bodies of a multipart/x-mixed-replace stream: each part after a line holding the
    boundary, its length from Content-Length (else up to the next boundary)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > _MAX_FRAME + 65536:
            raise SBIError("a preview frame is too large", "device_error")
        while True:
            at = buf.find(token)
            if at < 0:
                del buf[: max(0, len(buf) - len(token))]
                break
            eol = buf.find(b"\r\n", at)
            head_end = buf.find(b"\r\n\r\n", eol) if eol >= 0 else -1
            if head_end < 0:
                break
            length = None
            for line in bytes(buf[eol + 2 : head_end]).split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        raise SBIError(
                            "a preview frame's length is unreadable", "device_error"
                        ) from None
            start = head_end + 4
            if length is not None:
                if not 0 < length <= _MAX_FRAME:
                    raise SBIError("a preview frame's length is out of range", "device_error")
                if len(buf) < start + length:
                    break
                part = bytes(buf[start : start + length])
                del buf[: start + length]
            else:
                nxt = buf.find(token, start)
                if nxt < 0:
                    break
                part = bytes(buf[start:nxt]).rstrip(b"-").rstrip(b"\r\n")
                del buf[:nxt]
            if part:
                yield part


def _probe(http: httpx.Client, host: str, port: int, timeout: float) -> list[SBIDevice]:
    url = f"http://{host}:{port}/device"
    try:
        answer = _request(
            http, "MOSIPDISC", url, {"type": "Biometric Device"}, timeout, "rnp-kiosk", port
        )
        return _discovered(answer, port)
    except SBIError:
        return []  # nothing there, or not an SBI service


def scan_ports(
    ports: Iterable[int] = SBI_PORTS, host: str = "127.0.0.1", timeout: float = 2.0
) -> list[SBIDevice]:
    """Every device of every SBI service on ``host`` (discovery on each port, in parallel; a
    refused connection costs nothing): unverified, as discovery is."""
    with _http_client() as http, ThreadPoolExecutor(max_workers=16) as pool:
        found = pool.map(lambda p: _probe(http, host, p, timeout), list(ports))
        return [d for devices in found for d in devices]


def discover_all(
    ports: Iterable[int] = SBI_PORTS,
    trust_dir: str | Path | None = None,
    host: str = "127.0.0.1",
) -> list[DeviceInfo]:
    """The SBI devices on this machine for a technician (``devices discover``): each port's
    devices with their signed info when it verifies against ``trust_dir``; a device whose
    info does not verify is listed with firmware ``unverified``."""
    out: list[DeviceInfo] = []
    by_port: dict[int, list[SBIDevice]] = {}
    for device in scan_ports(ports, host):
        by_port.setdefault(device.port, []).append(device)
    for port, devices in sorted(by_port.items()):
        try:
            with SBIClient(port, host, trust_dir) as client:
                verified = {d.device_id: d for d in client.info() if d.verified}
        except SBIError:  # untrusted, or no trust folder: listed unverified
            verified = {}
        out.extend(verified.get(d.device_id, d).device_info() for d in devices)
    return out


# ---------------------------------------------------------------------------------- drivers
def _open_device(client: SBIClient, bio_type: str) -> SBIDevice:
    """The verified registration device of ``bio_type`` on the client's port."""
    devices = [d for d in client.info() if d.digital_id.type == bio_type]
    if not devices:
        raise SBIError(f"no SBI {bio_type.lower()} device on port {client.port}", "device_lost")
    device = sorted(devices, key=lambda d: d.digital_id.device_sub_type != "Slap")[0]
    if not device.verified:
        raise SBIError(
            f"the SBI {bio_type.lower()} device on port {client.port} is not registered",
            "untrusted_device",
        )
    if device.purpose != PURPOSE:
        raise SBIError(
            f"the SBI {bio_type.lower()} device is for {device.purpose or 'nothing'}, "
            "not registration",
            "device_error",
        )
    return device


def _connect(
    port: int,
    host: str,
    trust_dir: str | Path | None,
    timeout: float,
    bio_type: str,
    error: type[DeviceError],
) -> tuple[SBIClient, SBIDevice]:
    """A client of the service on ``port`` and its verified ``bio_type`` device; the
    driver's own ``error`` (with the SBI code) when there is none, and no client left open."""
    client = SBIClient(port, host, trust_dir, timeout)
    try:
        return client, _open_device(client, bio_type)
    except SBIError as exc:
        client.close()
        raise error(str(exc), exc.code) from exc


class SBIFingerprintReader(FingerprintReader):
    """A MOSIP SBI fingerprint reader (``sbi:<port>``): a 4-4-2 slap reader captures a slap
    at once (one RCAPTURE with the slap's deviceSubId), the device segments it and signs one
    ISO/IEC 19794-4 record per finger; missing fingers are sent as exceptions. A "Single"
    device (deviceSubId 0) captures finger by finger (not run against one).

    ``trust_dir``: the device-provider CA certificates (its ``sbi-ca`` subfolder if it has
    one); ``timeout``: seconds a capture may take. Errors: FingerprintReaderError with codes
    ``no_finger``, ``busy``, ``device_lost``, ``timeout``, ``untrusted_device``,
    ``device_error`` (the device broke the protocol)."""

    dpi = 500

    def __init__(
        self,
        port: int,
        *,
        trust_dir: str | Path | None = None,
        timeout: float = 30.0,
        host: str = "127.0.0.1",
        requested_score: int = 40,
    ) -> None:
        self.requested_score = requested_score
        self._client, self._device = _connect(
            port, host, trust_dir, timeout, "Finger", FingerprintReaderError
        )

    def info(self) -> DeviceInfo:
        """Vendor (make), model, serial and firmware from the device's signed info."""
        return self._device.device_info()

    def check(self) -> None:
        """Is the device still offered by its service, and not ``Not Ready``? (MOSIPDISC:
        cheap, and what a registration client polls.) FingerprintReaderError if not."""
        try:
            found = [
                d for d in self._client.discover("Finger") if d.device_id == self._device.device_id
            ]
        except SBIError as exc:
            raise FingerprintReaderError(str(exc), "device_lost") from exc
        if not found or found[0].status in ("Not Ready", "Not Registered"):
            status = found[0].status if found else "gone"
            raise FingerprintReaderError(f"the SBI finger device is {status}", "device_lost")

    def capture(self, position: int) -> np.ndarray:
        """One finger: asked of its slap (a finger alone on the platen)."""
        if position not in POSITIONS:
            raise ValueError(f"finger position must be 1-10, not {position}")
        return self._capture([position], [])[position]

    def capture_slap(self, positions: Sequence[int]) -> dict[int, np.ndarray]:
        """The fingers of one slap at once; the slap's other fingers are sent as exceptions
        (missing). ValueError for positions of different slaps."""
        wanted = list(dict.fromkeys(positions))
        if not wanted or any(p not in POSITIONS for p in wanted):
            raise ValueError(f"finger positions must be 1-10: {list(positions)}")
        if self._device.digital_id.device_sub_type == "Single":
            return super().capture_slap(wanted)
        slaps = {_SLAP_OF[p] for p in wanted}
        if len(slaps) != 1:
            raise ValueError(f"positions {wanted} are not all in one slap")
        missing = [p for p in SLAP_FINGERS[slaps.pop()] if p not in wanted]
        return self._capture(wanted, missing)

    def _capture(self, wanted: list[int], missing: list[int]) -> dict[int, np.ndarray]:
        single = self._device.digital_id.device_sub_type == "Single"
        sub_id = 0 if single else _SLAP_OF[wanted[0]]
        names = [FINGER_NAMES[p] for p in wanted]
        try:
            captures = self._client.rcapture(
                self._device.device_id,
                "Finger",
                sub_id,
                names,
                [FINGER_NAMES[p] for p in missing],
                requested_score=self.requested_score,
            )
            if any(c.digital_id.serial_no != self._device.digital_id.serial_no for c in captures):
                raise SBIError(f"another device answers on port {self._client.port}", "device_lost")
            return {_POSITION_OF[c.bio_sub_type]: c.image() for c in captures}
        except SBIError as exc:
            raise FingerprintReaderError(str(exc), exc.code) from exc

    def close(self) -> None:
        """Close the connection to the device service."""
        self._client.close()


class SBICamera(Camera):
    """A MOSIP SBI face device (``sbi:<port>``): ``read()`` plays its STREAM preview (M-JPEG,
    RGB frames), ``capture()`` is the device's own registration capture (RCAPTURE of a
    Face: the ISO/IEC 19794-5 image it signed). Errors: CameraError with the SBI codes."""

    def __init__(
        self,
        port: int,
        *,
        trust_dir: str | Path | None = None,
        timeout: float = 30.0,
        host: str = "127.0.0.1",
        requested_score: int = 40,
    ) -> None:
        self.requested_score = requested_score
        self._client, self._device = _connect(port, host, trust_dir, timeout, "Face", CameraError)
        self._frames: Iterator[np.ndarray] | None = None
        self._index = 0
        self._start = 0.0

    def __enter__(self) -> SBICamera:
        return self

    def info(self) -> DeviceInfo:
        """Vendor (make), model, serial and firmware from the device's signed info."""
        return self._device.device_info()

    def read(self) -> Frame | None:
        """The next preview frame, or None when the device ended the stream."""
        sub_id = self._device.sub_ids[0] if self._device.sub_ids else 0
        if self._frames is None:
            self._frames = self._client.stream(self._device.device_id, sub_id)
            self._start = time.monotonic()
        try:
            image = next(self._frames)
        except StopIteration:
            self._frames = None
            return None
        except SBIError as exc:
            self._frames = None
            raise CameraError(str(exc), exc.code) from exc
        frame = Frame(image, self._index, time.monotonic() - self._start)
        self._index += 1
        return frame

    def capture(self) -> np.ndarray:
        """The device's registration capture of the face before it: the RGB image of the
        ISO/IEC 19794-5 record it signed."""
        sub_id = self._device.sub_ids[0] if self._device.sub_ids else 0
        try:
            (face,) = self._client.rcapture(
                self._device.device_id, "Face", sub_id, requested_score=self.requested_score
            )
            if face.digital_id.serial_no != self._device.digital_id.serial_no:
                raise SBIError(f"another device answers on port {self._client.port}", "device_lost")
            return face.image()
        except SBIError as exc:
            raise CameraError(str(exc), exc.code) from exc

    def close(self) -> None:
        """End the preview and close the connection."""
        if self._frames is not None:
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()
            self._frames = None
        self._client.close()
