"""The enrolment packet: the wire contract between kiosks and the central registry.

Kiosks import this module to build packets; the registry uses it to validate them. Everything
a packet may hold is checked here, so a malformed packet is refused before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from biometrics.face import TEMPLATE_DIM
from biometrics.fingerprint import FingerPosition

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

SCHEMA_VERSION: Final = 1
SIGNATURE_HEADER = "X-Kiosk-Signature"  # base64 Ed25519 signature of read_message()
KIOSK_HEADER = "X-Kiosk-Id"  # which kiosk sends (every request; checked before a body is read)
TIMESTAMP_HEADER = "X-Kiosk-Timestamp"  # on reads: unix seconds, within READ_SKEW of the server
READ_SKEW = timedelta(minutes=5)
MAX_FACE_TEMPLATES = 4
MAX_FACE_IMAGE_BYTES = 1024 * 1024
# The face image is the ICAO token image (ISO/IEC 19794-5; the kiosk's is 360x480). Its size is
# read from the header and refused before any pixel is decoded: a few hundred bytes of JPEG 2000
# can declare 4096x4096 and cost half a second of CPU to decode.
MAX_IMAGE_SIDE = 1600
MIN_IMAGE_SIDE = 64
MAX_IMAGE_PIXELS = 1200 * 1600
MAX_FINGERPRINT_BYTES = 16 * 1024
# One finger's ISO/IEC 19794-4 image record: WSQ at ~15:1 is 10-30 KB; lossless PNG or
# JPEG 2000 of a large flat finger up to this
MAX_FINGER_IMAGE_BYTES = 160 * 1024
CLOCK_SKEW = timedelta(minutes=10)
MAX_SENT_AT = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond, not a time at all

_LATIN_NAME = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿĀ-žḀ-ỿ' .\-]+$")
_ARABIC_NAME = re.compile(r"^[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\u2D30-\u2D7F ' .\-]+$")
_ARABIC_LETTER = re.compile(r"[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\u2D30-\u2D7F]")


def _b64decode(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise ValueError("must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("is not valid base64") from exc


B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# A face template is unit length: every value lies in [-1, 1] (1e39 would even overflow float32)
TemplateValue = Annotated[float, Field(allow_inf_nan=False, ge=-1.0, le=1.0)]


class ErrorCode(StrEnum):
    """Why the registry refused a request: the ``code`` of every error answer.

    The kiosk decides from the code, never from the HTTP status alone, whether sending the same
    packet again can succeed (:data:`RETRYABLE`) or a person must look at it (the rest)."""

    INVALID_REQUEST = "invalid_request"  # 400/422: a request (not a packet) breaks the API
    UNDECRYPTABLE = "undecryptable"  # 400: not sealed to this registry's key
    NOT_AUTHENTICATED = "not_authenticated"  # 401: unknown kiosk or wrong signature (alike)
    KIOSK_DEACTIVATED = "kiosk_deactivated"  # 403: the kiosk was revoked
    NOT_FOUND = "not_found"  # 404
    BODY_TIMEOUT = "body_timeout"  # 408: the body came too slowly
    REPLAY = "replay"  # 409: this envelope was seen before
    CLOCK_SKEW = "clock_skew"  # 409: sent_at outside the replay window (``server_time`` given)
    PACKET_CONFLICT = "packet_conflict"  # 409: other content under a packet id already used
    TOO_LARGE = "too_large"  # 413
    INVALID_PACKET = "invalid_packet"  # 422: the packet breaks the wire contract
    CAPTURE_POLICY = "capture_policy"  # 422: the capture evidence fails the intake policy
    WITNESSES_NOT_REGISTERED = "witnesses_not_registered"  # 422
    RATE_LIMITED = "rate_limited"  # 429 (Retry-After)
    OVERLOADED = "overloaded"  # 503: the dedup queue is full (Retry-After)
    BUSY = "busy"  # 503: too many bodies being received at once (Retry-After)
    UNAVAILABLE = "unavailable"  # 503: storage failed; nothing was stored
    FORBIDDEN = "forbidden"  # 403: the console operator's role does not allow it
    CONFLICT = "conflict"  # 409: a console action that does not fit the current state


RETRYABLE = frozenset(
    {
        ErrorCode.BODY_TIMEOUT,
        ErrorCode.REPLAY,
        ErrorCode.CLOCK_SKEW,
        ErrorCode.RATE_LIMITED,
        ErrorCode.OVERLOADED,
        ErrorCode.BUSY,
        ErrorCode.UNAVAILABLE,
    }
)


class ErrorAnswer(BaseModel):
    """The body of every error answer of the registry."""

    code: ErrorCode
    retryable: bool
    detail: object = Field(description="what is wrong: a sentence, or the invalid fields")
    reasons: list[str] = Field(default_factory=list, description="capture-policy reason codes")
    server_time: int | None = Field(default=None, description="unix seconds (clock_skew)")


class DocumentType(StrEnum):
    """Identity documents a kiosk reads."""

    CNIE = "CNIE"  # Moroccan national electronic identity card
    PASSPORT = "PASSPORT"
    RESIDENCE_CARD = "RESIDENCE_CARD"  # carte de séjour, foreign residents
    BIRTH_CERTIFICATE = "BIRTH_CERTIFICATE"  # extrait d'acte de naissance (no chip)


class Sex(StrEnum):
    """Sex as printed in the MRZ (ICAO 9303): F, M or X (unspecified)."""

    F = "F"
    M = "M"
    X = "X"


class Document(BaseModel):
    """The document the person presented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: DocumentType
    number: str = Field(pattern=r"^[A-Z0-9]{1,20}$")
    issuing_country: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3")


class Demographics(BaseModel):
    """Who the person says they are, as read from the document and confirmed at the kiosk."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    surname_latin: str = Field(min_length=1, max_length=80)
    given_names_latin: str = Field(min_length=1, max_length=120)
    surname_arabic: str | None = Field(default=None, min_length=1, max_length=80)
    given_names_arabic: str | None = Field(default=None, min_length=1, max_length=120)
    date_of_birth: date
    place_of_birth: str = Field(min_length=1, max_length=120)
    sex: Sex
    nationality: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3")
    address: str = Field(min_length=1, max_length=300)
    document: Document | None = Field(
        default=None, description="absent only when two registered witnesses vouch"
    )

    @field_validator("surname_latin", "given_names_latin")
    @classmethod
    def _latin(cls, v: str) -> str:
        if not _LATIN_NAME.match(v):
            raise ValueError("must be written in Latin letters")
        return v

    @field_validator("surname_arabic", "given_names_arabic")
    @classmethod
    def _arabic(cls, v: str | None) -> str | None:
        if v is not None and not (_ARABIC_NAME.match(v) and _ARABIC_LETTER.search(v)):
            raise ValueError("must be written in Arabic (or Tifinagh) script")
        return v

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth(cls, v: date) -> date:
        today = datetime.now(UTC).date()
        if v > today:
            raise ValueError("date of birth is in the future")
        if v < today.replace(year=today.year - 150):
            raise ValueError("date of birth is more than 150 years ago")
        return v


class FingerprintRecord(BaseModel):
    """One finger on the wire: the kiosk's template, its ISO/IEC 19794-2 record (``data``,
    what :meth:`biometrics.fingerprint.FingerprintTemplate.to_iso19794_2` writes), position and
    quality, and the image it was made from (``image``: an ISO/IEC 19794-4:2005 record, WSQ,
    PNG or JPEG 2000, what :meth:`biometrics.fingerprint.FingerImage.to_iso19794_4` writes).

    When the image is there, the registry makes its own template from it and the kiosk's
    serves the kiosk's local checks only; a packet without images (older kiosks) is decided
    on the kiosk's templates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position: FingerPosition = Field(description="ISO/IEC 19794-2 finger position 1-10")
    format: Literal["ISO_19794_2_2005"] = "ISO_19794_2_2005"
    quality: int = Field(ge=0, le=100)
    data: Annotated[B64Bytes, Field(min_length=1, max_length=MAX_FINGERPRINT_BYTES)]
    image: Annotated[B64Bytes, Field(min_length=1, max_length=MAX_FINGER_IMAGE_BYTES)] | None = None

    @model_validator(mode="after")
    def _image_header(self) -> FingerprintRecord:
        if self.image is not None:
            from biometrics.fingerprint import FingerImageError, read_image_header

            try:  # the header only: decoding is the dedup worker's, in a process of its own
                head = read_image_header(self.image)
            except FingerImageError as exc:
                raise ValueError(f"image: {exc}") from exc
            if head.position not in (0, self.position):
                raise ValueError("image: the record is of another finger position")
        return self


class DocumentSource(StrEnum):
    """How the person's identity was established at the kiosk."""

    CHIP = "chip"  # an eMRTD chip read and passively authenticated
    BIRTH_CERTIFICATE = "birth_certificate"  # extract of the civil-status birth record
    WITNESSES = "witnesses"  # two people already registered vouch for them


class DeviceInfo(BaseModel):
    """A device that took part in the capture, as the device daemon reported it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["camera", "fingerprint", "card_reader"]
    model: str = Field(min_length=1, max_length=80)
    device_id: str = Field(min_length=1, max_length=80)
    firmware: str = Field(min_length=1, max_length=40)


class FingerException(BaseModel):
    """A finger that was not captured, and why (approved by an operator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position: FingerPosition
    reason: Literal["amputated", "bandaged", "injured", "unusable", "other"]


class Override(BaseModel):
    """An operator's or supervisor's authenticated decision during the enrolment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operator_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{2,40}$")
    role: Literal["operator", "supervisor"]
    action: Literal[
        "finger_exception",
        "no_document",
        "face_document_mismatch",
        "face_retry",
        "face_capture_waived",  # N failed face captures: the best one accepted (adjudicated)
        "document_not_verified",  # a chip whose CSCA is not in the trust list, checked by hand
    ]
    subject: str | None = Field(default=None, max_length=40)
    reason: str = Field(min_length=1, max_length=200)
    at: AwareDatetime


IDCS_PATTERN = r"^[0-9]{10}$"


def idcs_well_formed(number: str) -> bool:
    """True if ``number`` can be an IDCS: ten digits ending with a valid Verhoeff check digit
    (a kiosk checks a typed witness's IDCS with it before anything is captured)."""
    from central_api.identity.idcs import verhoeff_valid  # (not at import: kiosks load this)

    return re.fullmatch(IDCS_PATTERN, number) is not None and verhoeff_valid(number)


class CaptureInfo(BaseModel):
    """How the enrolment was captured: evidence, qualities, exceptions, devices, overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    document_source: DocumentSource
    birth_certificate_number: str | None = Field(default=None, pattern=r"^[A-Z0-9/\-]{1,30}$")
    witnesses: list[Annotated[str, Field(pattern=IDCS_PATTERN)]] = Field(
        default_factory=list, max_length=2
    )
    passive_authentication: Literal["valid", "invalid", "unknown_csca", "unknown"] | None = None
    # how the chip was opened ("BAC", "PACE-ECDH-GM-AES-128", ...) and whether it proved it
    # holds its own private key (clone detection): Chip Authentication (DG14) and Active
    # Authentication (DG15). A chip enrolment from an older kiosk leaves them out.
    access_control: str | None = Field(default=None, pattern=r"^(BAC|PACE-[A-Z0-9-]{4,40})$")
    chip_authentication: Literal["passed", "not_supported"] | None = None
    active_authentication: Literal["passed", "failed", "unknown", "not_supported"] | None = None
    face_quality: int = Field(ge=0, le=100)
    face_liveness: bool
    face_document_similarity: FiniteFloat | None = Field(default=None, ge=-1, le=1)
    finger_exceptions: list[FingerException] = Field(default_factory=list, max_length=10)
    overrides: list[Override] = Field(default_factory=list, max_length=20)
    devices: list[DeviceInfo] = Field(default_factory=list, max_length=8)
    language: Literal["ar", "fr", "zgh", "en"]

    @model_validator(mode="after")
    def _evidence(self) -> CaptureInfo:
        src = self.document_source
        if src == DocumentSource.BIRTH_CERTIFICATE and not self.birth_certificate_number:
            raise ValueError("a birth-certificate enrolment needs the extract number")
        if src == DocumentSource.WITNESSES and len(set(self.witnesses)) != 2:
            raise ValueError("a witnessed enrolment needs two different witnesses' IDCS")
        if src != DocumentSource.WITNESSES and self.witnesses:
            raise ValueError("witnesses are only recorded for a witnessed enrolment")
        if src == DocumentSource.CHIP and self.passive_authentication is None:
            raise ValueError("a chip enrolment records its passive-authentication result")
        positions = [e.position for e in self.finger_exceptions]
        if len(positions) != len(set(positions)):
            raise ValueError("finger_exceptions repeat a finger position")
        return self


_END_MARKERS = {"JPEG": b"\xff\xd9", "JPEG2000": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _check_image(data: bytes) -> bytes:
    """Refuse anything that is not a complete JPEG, PNG or JPEG 2000 image of token size.

    The format and size come from the header alone; only an image within the limits is
    decoded, so a small file declaring a huge image costs nothing. No lock is held: Pillow's
    decoders release the GIL, and concurrent validations run side by side."""
    from PIL import Image, ImageFile, UnidentifiedImageError  # lazy: only validation needs it

    # face_recognition turns this on for the whole process when imported; this project never
    # wants a truncated image padded silently (biometrics.face also turns it off again)
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            if img.format not in _END_MARKERS:
                raise ValueError(f"face_image must be JPEG, PNG or JPEG 2000, not {img.format}")
            w, h = img.size
            if max(w, h) > MAX_IMAGE_SIDE or min(w, h) < MIN_IMAGE_SIDE or w * h > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"face_image is {w}x{h}; an ICAO token image has sides of "
                    f"{MIN_IMAGE_SIDE}-{MAX_IMAGE_SIDE} px and at most {MAX_IMAGE_PIXELS} pixels"
                )
            if not data.rstrip(b"\0").endswith(_END_MARKERS[img.format]):
                raise ValueError("face_image is corrupt or truncated (no end marker)")
            img.load()  # decodes every byte: corrupt data raises here
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError("face_image is corrupt or truncated") from exc
    return data


class EnrolmentPacket(BaseModel):
    """Everything a kiosk sends about one enrolment. ``packet_id`` makes submission idempotent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    packet_id: uuid.UUID
    kiosk_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{3,64}$")
    captured_at: AwareDatetime
    demographics: Demographics
    face_templates: list[
        Annotated[
            list[TemplateValue],
            Field(min_length=TEMPLATE_DIM, max_length=TEMPLATE_DIM),
        ]
    ] = Field(min_length=1, max_length=MAX_FACE_TEMPLATES)
    face_image: Annotated[B64Bytes, Field(min_length=1, max_length=MAX_FACE_IMAGE_BYTES)]
    fingerprints: list[FingerprintRecord] = Field(default_factory=list, max_length=10)
    capture: CaptureInfo | None = None

    @field_validator("face_templates")
    @classmethod
    def _usable_templates(cls, v: list[list[float]]) -> list[list[float]]:
        for i, t in enumerate(v):
            if math.fsum(x * x for x in t) < 1e-12:
                raise ValueError(f"face template {i} is all zeros")
        return v

    @field_validator("face_image")
    @classmethod
    def _image(cls, v: bytes) -> bytes:
        return _check_image(v)

    @field_validator("captured_at")
    @classmethod
    def _not_future(cls, v: datetime) -> datetime:
        if v > datetime.now(UTC) + CLOCK_SKEW:
            raise ValueError("captured_at is in the future (check the kiosk clock)")
        return v

    @model_validator(mode="after")
    def _unique_fingers(self) -> EnrolmentPacket:
        positions = [f.position for f in self.fingerprints]
        if len(positions) != len(set(positions)):
            raise ValueError("fingerprints repeat a finger position")
        c = self.capture
        if c is not None:
            if set(positions) & {e.position for e in c.finger_exceptions}:
                raise ValueError("a finger is both captured and recorded as an exception")
            has_doc = self.demographics.document is not None
            if has_doc == (c.document_source == DocumentSource.WITNESSES):
                raise ValueError("a document is required unless two witnesses vouch")
        elif self.demographics.document is None:
            raise ValueError("a document is required unless two witnesses vouch")
        return self


def read_message(path: str, timestamp: int) -> bytes:
    """What a kiosk signs to read a status: only the kiosk that sent a packet may read it."""
    return f"GET {path}\n{timestamp}".encode()


class EnrolmentState(StrEnum):
    """Where an enrolment stands: the wire's ``status`` and the enrolments table's column."""

    RECEIVED = "received"
    PROCESSING = "processing"
    ISSUED = "issued"
    DUPLICATE = "duplicate"
    ADJUDICATION = "adjudication"
    REJECTED = "rejected"
    MORE_INFORMATION = "more_information"  # an adjudicator asks the citizen to come back


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # no I, L, O, U: nothing to misread


def receipt_number(packet_id: uuid.UUID) -> str:
    """The one number the citizen keeps for an enrolment, ``RNP-XXXXX-XXXXX``: 50 bits of a
    hash of the packet id in Crockford base 32. The kiosk prints it before the registry has
    answered (offline too) and the registry gives the same. A reference for people, not a
    key: over tens of millions of enrolments a few pairs share one (about one pair in 40 M),
    so a look-up by number may return two enrolments; the packet id is the key."""
    bits = int.from_bytes(hashlib.sha256(packet_id.bytes).digest()[:8], "big") >> 14
    chars = "".join(_CROCKFORD[(bits >> (5 * i)) & 31] for i in reversed(range(10)))
    return f"RNP-{chars[:5]}-{chars[5:]}"


class EnrolmentStatus(BaseModel):
    """What the registry tells the kiosk (and the citizen, through the receipt), signed.

    The registry signs every status it returns with its Ed25519 decision key
    (:func:`decision_message`); the kiosk checks the signature with the public half it was
    provisioned with before it forgets a packet's content or prints an IDCS, so a wrong URL, a
    proxy or a fake server answering 201 cannot make it do either."""

    packet_id: uuid.UUID
    kiosk_id: str
    receipt_number: str
    status: EnrolmentState
    idcs: str | None = None
    reason: str | None = Field(default=None, description="why it was rejected (a code)")
    message: str
    received_at: datetime
    updated_at: datetime
    signed_at: int = Field(description="unix seconds when the registry signed this answer")
    signature: str = Field(default="", description="base64 Ed25519 over decision_message()")

    @property
    def final(self) -> bool:
        """True once the status will not change any more: an enrolment under adjudication
        still changes (an adjudicator decides), so the kiosk keeps asking."""
        return self.status not in (
            EnrolmentState.RECEIVED,
            EnrolmentState.PROCESSING,
            EnrolmentState.ADJUDICATION,
        )

    @property
    def decided(self) -> bool:
        """True once the registry's machine has decided (an adjudication case included)."""
        return self.status not in (EnrolmentState.RECEIVED, EnrolmentState.PROCESSING)


def decision_message(st: EnrolmentStatus) -> bytes:
    """The bytes the registry signs: which kiosk's packet, its status, IDCS, rejection reason,
    receipt number, when it was decided and when it was signed (the free-text message is not
    signed)."""
    return "\n".join(
        [
            "RNP-DECISION-v1",
            st.kiosk_id,
            str(st.packet_id),
            st.status.value,
            st.idcs or "-",
            st.reason or "-",
            st.receipt_number,
            st.updated_at.astimezone(UTC).isoformat(),
            str(st.signed_at),
        ]
    ).encode()


def sign_status(st: EnrolmentStatus, sign: Callable[[bytes], bytes]) -> EnrolmentStatus:
    """``st`` with its signature (``sign`` maps bytes to a raw Ed25519 signature)."""
    return st.model_copy(
        update={"signature": base64.b64encode(sign(decision_message(st))).decode("ascii")}
    )


class DecisionNotAuthentic(ValueError):
    """A registry answer whose signature does not verify, or that is about another packet."""


def verify_status(
    st: EnrolmentStatus, registry_public: bytes, kiosk_id: str, packet_id: uuid.UUID
) -> EnrolmentStatus:
    """Check that ``st`` was signed by the registry (raw 32-byte Ed25519 public key) for this
    kiosk's ``packet_id``; returns it, or raises DecisionNotAuthentic."""
    if st.kiosk_id != kiosk_id or st.packet_id != packet_id:
        raise DecisionNotAuthentic("the registry answered about another packet")
    check_registry_signature(registry_public, st.signature, decision_message(st))
    return st


def check_registry_signature(registry_public: bytes, signature: str, message: bytes) -> None:
    """DecisionNotAuthentic unless ``signature`` (base64) is the registry's Ed25519 signature
    (raw 32-byte public key) of ``message``: every signed answer a kiosk acts on."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(registry_public).verify(
            base64.b64decode(signature, validate=True), message
        )
    except (InvalidSignature, ValueError, binascii.Error) as exc:
        raise DecisionNotAuthentic("the answer is not signed by the registry's key") from exc


# --- kiosk operators: the agents and supervisors of a kiosk, managed by the registry -------------
#
# A kiosk checks its operators' PINs itself (offline too), so the registry sends it their salted
# scrypt hashes in a list it signs with its Ed25519 decision key; the kiosk installs a list only
# if the signature verifies, it names this kiosk, and its version is not older than the one it
# has (no rollback to a list with an operator since disabled).

# a technician installs and calibrates the kiosk's devices: no authority over enrolments
KioskRole = Literal["operator", "supervisor", "technician"]


def pin_hash(pin: str, salt: bytes) -> str:
    """The hash a kiosk compares a typed PIN with (scrypt, N=2^14, r=8, p=1; hex)."""
    return hashlib.scrypt(pin.encode(), salt=salt, n=2**14, r=8, p=1).hex()


class OperatorEntry(BaseModel):
    """One agent, supervisor or technician as a kiosk stores them: id, role, PIN salt and
    hash (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{2,40}$")
    role: KioskRole
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    hash: str = Field(pattern=r"^[0-9a-f]{128}$")


class OperatorList(BaseModel):
    """The operators of one kiosk, version ``version`` (rises with every change), signed."""

    kiosk_id: str
    version: int = Field(ge=0)
    issued_at: int = Field(description="unix seconds when the registry signed it")
    operators: list[OperatorEntry] = Field(max_length=2000)
    signature: str = ""

    def message(self) -> bytes:
        """The bytes the registry signs: everything but the signature, canonically."""
        body = [o.model_dump() for o in sorted(self.operators, key=lambda o: o.id)]
        return "\n".join(
            [
                "RNP-OPERATORS-v1",
                self.kiosk_id,
                str(self.version),
                str(self.issued_at),
                json.dumps(body, sort_keys=True, separators=(",", ":")),
            ]
        ).encode()

    def signed(self, sign: Callable[[bytes], bytes]) -> OperatorList:
        """This list with the registry's signature."""
        return self.model_copy(
            update={"signature": base64.b64encode(sign(self.message())).decode("ascii")}
        )

    def verify(self, registry_public: bytes, kiosk_id: str) -> OperatorList:
        """Itself, if the registry (raw Ed25519 public key) signed it for ``kiosk_id``;
        DecisionNotAuthentic if not."""
        if self.kiosk_id != kiosk_id:
            raise DecisionNotAuthentic("the operator list is another kiosk's")
        check_registry_signature(registry_public, self.signature, self.message())
        return self


class Envelope(BaseModel):
    """The signed message inside a sealed request, once its signature has been checked: what
    the kiosk sent (``packet``, each kind narrows it) plus what makes this send unique."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    send_id: uuid.UUID
    sent_at: int = Field(ge=0, le=MAX_SENT_AT)
    packet: Any  # narrowed by each kind of envelope; every kind names its kiosk (kiosk_id)


# --- showing a duplicate citizen the IDCS they already hold ----------------------------------
#
# A citizen told "already registered" asks the agent for their identifier. The kiosk captures a
# live face (liveness checked), and sends, sealed like a packet (a face template is biometric
# data), a RevealRequest about the duplicate enrolment it sent; the registry compares the face
# 1:1 with the references of the person that enrolment was linked to and answers, signed, the
# IDCS (``shown``) or not (``mismatch``; after MAX_REVEAL_ATTEMPTS failures, ``refused``).

MAX_REVEAL_ATTEMPTS = 3
REVEAL_FMR = 1e-3  # the 1:1 threshold: as the kiosk's face-to-chip check (3 tries: <= 0.3 %)


class RevealRequest(BaseModel):
    """A kiosk's request to show the citizen of a duplicate enrolment their IDCS."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["reveal_idcs"] = "reveal_idcs"
    kiosk_id: str = Field(min_length=1, max_length=64)
    packet_id: uuid.UUID = Field(description="the duplicate enrolment's packet (this kiosk's)")
    face_template: list[TemplateValue] = Field(min_length=TEMPLATE_DIM, max_length=TEMPLATE_DIM)
    face_liveness: bool
    face_quality: int = Field(ge=0, le=100)
    operator_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{2,40}$")


class RevealEnvelope(Envelope):
    """The signed message inside a sealed reveal request."""

    packet: RevealRequest


class RevealAnswer(BaseModel):
    """The registry's answer to a reveal request, signed with its decision key."""

    packet_id: uuid.UUID
    kiosk_id: str
    receipt_number: str
    outcome: Literal["shown", "mismatch", "refused"]
    idcs: str | None = None
    attempts_left: int
    signed_at: int
    signature: str = ""

    def message(self) -> bytes:
        """The bytes the registry signs (all but the signature)."""
        return "\n".join(
            [
                "RNP-REVEAL-v1",
                self.kiosk_id,
                str(self.packet_id),
                self.receipt_number,
                self.outcome,
                self.idcs or "-",
                str(self.attempts_left),
                str(self.signed_at),
            ]
        ).encode()

    def signed(self, sign: Callable[[bytes], bytes]) -> RevealAnswer:
        """This answer with the registry's signature."""
        return self.model_copy(
            update={"signature": base64.b64encode(sign(self.message())).decode("ascii")}
        )

    def verify(self, registry_public: bytes, kiosk_id: str, packet_id: uuid.UUID) -> RevealAnswer:
        """Itself if the registry signed it for this kiosk's packet; DecisionNotAuthentic."""
        if self.kiosk_id != kiosk_id or self.packet_id != packet_id:
            raise DecisionNotAuthentic("the registry answered about another packet")
        check_registry_signature(registry_public, self.signature, self.message())
        return self


# --- questions a kiosk asks between packets ---------------------------------------------------
#
# Sealed and signed like a packet (they hold personal data), answered with a signature that
# names the kiosk and the question's own id, so an answer cannot be replayed to another one.

RECEIPT_PATTERN = r"^RNP-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$"


class WitnessQuery(BaseModel):
    """Before any capture: are the two witnesses of a no-document enrolment registered
    persons? (The answer says only whether the pair is, as the intake does.)"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["witnesses"] = "witnesses"
    query_id: uuid.UUID
    kiosk_id: str = Field(min_length=1, max_length=64)
    witnesses: list[Annotated[str, Field(pattern=IDCS_PATTERN)]] = Field(min_length=2, max_length=2)
    operator_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{2,40}$")


class ReceiptQuery(BaseModel):
    """A citizen checks a receipt at any kiosk: its number and their date of birth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["receipt"] = "receipt"
    query_id: uuid.UUID
    kiosk_id: str = Field(min_length=1, max_length=64)
    receipt_number: str = Field(pattern=RECEIPT_PATTERN)
    date_of_birth: date


KioskQuery = Annotated[WitnessQuery | ReceiptQuery, Field(discriminator="kind")]


class QueryEnvelope(Envelope):
    """The signed message inside a sealed query."""

    packet: KioskQuery


class QueryAnswer(BaseModel):
    """The registry's answer to a kiosk's query, signed with its decision key. For a receipt:
    ``found`` with the enrolment's state and, once issued, the IDCS's last four digits (the
    whole number is shown only after a live face check); ``not_found`` whether the number or
    the date is wrong; ``refused`` after too many wrong tries."""

    query_id: uuid.UUID
    kiosk_id: str
    kind: Literal["witnesses", "receipt"]
    outcome: Literal["registered", "not_registered", "found", "not_found", "refused"]
    status: EnrolmentState | None = None
    idcs_last4: str | None = Field(default=None, pattern=r"^[0-9]{4}$")
    signed_at: int
    signature: str = ""

    def message(self) -> bytes:
        """The bytes the registry signs (all but the signature)."""
        return "\n".join(
            [
                "RNP-QUERY-v1",
                self.kiosk_id,
                str(self.query_id),
                self.kind,
                self.outcome,
                self.status or "-",
                self.idcs_last4 or "-",
                str(self.signed_at),
            ]
        ).encode()

    def signed(self, sign: Callable[[bytes], bytes]) -> QueryAnswer:
        """This answer with the registry's signature."""
        return self.model_copy(
            update={"signature": base64.b64encode(sign(self.message())).decode("ascii")}
        )

    def verify(self, registry_public: bytes, kiosk_id: str, query_id: uuid.UUID) -> QueryAnswer:
        """Itself if the registry signed it for this kiosk's query; DecisionNotAuthentic."""
        if self.kiosk_id != kiosk_id or self.query_id != query_id:
            raise DecisionNotAuthentic("the registry answered another question")
        check_registry_signature(registry_public, self.signature, self.message())
        return self


# --- the sealed envelope: how a packet travels ------------------------------------------------
#
# A kiosk signs the packet with its Ed25519 key and encrypts it to the registry's X25519 public
# key (ephemeral-static ECDH, HKDF-SHA256, AES-256-GCM): nobody on the way can read or alter
# it. Each *send* of a packet gets a fresh envelope with its own ``send_id`` and ``sent_at``
# inside the signed part; the registry refuses a send id it has seen before and a ``sent_at``
# outside ``CLOCK_SKEW``, so a captured envelope cannot be replayed, while a kiosk may resend
# the same packet (same content, new envelope) as often as it needs to.

SEALED_VERSION: Final = 1
_SEAL_INFO = b"RNP enrolment packet v1"
_SIG_LEN = 64


class SealedPacket(BaseModel):
    """The body of ``POST /v1/enrolments``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = SEALED_VERSION
    kiosk_id: str = Field(pattern=r"^[A-Za-z0-9_.\-]{3,64}$")
    epk: Annotated[B64Bytes, Field(min_length=32, max_length=32)]
    nonce: Annotated[B64Bytes, Field(min_length=12, max_length=12)]
    ct: Annotated[B64Bytes, Field(min_length=_SIG_LEN + 16 + 2)]


class SealError(ValueError):
    """An envelope that cannot be opened (not for this registry's key, or altered)."""


def _seal_key(shared: bytes, epk: bytes, recipient: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt=epk + recipient, info=_SEAL_INFO).derive(shared)


def _seal_aad(kiosk_id: str, epk: bytes) -> bytes:
    return b"RNP-SEALED-v1|" + kiosk_id.encode() + b"|" + epk


def send_message(packet_json: bytes, send_id: uuid.UUID, sent_at: int) -> bytes:
    """The signed plaintext of one send: the packet plus what makes this send unique."""
    return b'{"send_id":"%s","sent_at":%d,"packet":%s}' % (
        str(send_id).encode(),
        sent_at,
        packet_json,
    )


def seal(
    packet_json: bytes,
    kiosk_id: str,
    sign: Callable[[bytes], bytes],
    recipient_public: bytes,
    send_id: uuid.UUID | None = None,
    sent_at: int | None = None,
) -> bytes:
    """Seal ``packet_json`` for the registry: returns the JSON body to POST.

    ``sign`` maps bytes to a raw 64-byte Ed25519 signature (the kiosk's key never leaves it).
    """
    import os
    import time

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    message = send_message(
        packet_json, send_id or uuid.uuid4(), int(time.time()) if sent_at is None else sent_at
    )
    signature = sign(message)
    if not isinstance(signature, bytes) or len(signature) != _SIG_LEN:
        raise ValueError("sign() must return a 64-byte Ed25519 signature")
    esk = X25519PrivateKey.generate()
    epk = esk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = esk.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    nonce = os.urandom(12)
    ct = AESGCM(_seal_key(shared, epk, recipient_public)).encrypt(
        nonce, signature + message, _seal_aad(kiosk_id, epk)
    )
    return SealedPacket(kiosk_id=kiosk_id, epk=epk, nonce=nonce, ct=ct).model_dump_json().encode()


@dataclass(frozen=True)
class OpenedSend:
    """A decrypted envelope: the signature and the signed message, not yet verified."""

    kiosk_id: str
    signature: bytes
    message: bytes


def open_sealed(body: bytes, recipient_private: X25519PrivateKey) -> OpenedSend:
    """Decrypt an envelope with the registry's X25519 private key; raises SealError."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from pydantic import ValidationError

    try:
        env = SealedPacket.model_validate_json(body)
    except ValidationError as exc:
        raise SealError(
            "the body is not a sealed enrolment packet (see SealedPacket): "
            + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
        ) from exc
    key = recipient_private
    recipient = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(env.epk))
        plain = AESGCM(_seal_key(shared, env.epk, recipient)).decrypt(
            env.nonce, env.ct, _seal_aad(env.kiosk_id, env.epk)
        )
    except (InvalidTag, ValueError) as exc:
        raise SealError(
            "the packet could not be decrypted: it was not sealed to this registry's key "
            "or it was altered in transit"
        ) from exc
    return OpenedSend(env.kiosk_id, plain[:_SIG_LEN], plain[_SIG_LEN:])


class SendEnvelope(Envelope):
    """The signed message inside an envelope, once its signature has been checked."""

    packet: EnrolmentPacket
