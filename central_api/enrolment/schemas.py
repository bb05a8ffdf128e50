"""The enrolment packet: the wire contract between kiosks and the central registry.

Kiosks import this module to build packets; the registry uses it to validate them. Everything
a packet may hold is checked here, so a malformed packet is refused before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

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

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Kiosk-Signature"  # base64 Ed25519 signature (body, or read_message())
KIOSK_HEADER = "X-Kiosk-Id"  # on reads: which kiosk signs
TIMESTAMP_HEADER = "X-Kiosk-Timestamp"  # on reads: unix seconds, within READ_SKEW of the server
READ_SKEW = timedelta(minutes=5)
FACE_TEMPLATE_DIM = 128
MAX_FACE_TEMPLATES = 4
MAX_FACE_IMAGE_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 4096
MIN_IMAGE_SIDE = 64
MAX_FINGERPRINT_BYTES = 16 * 1024
CLOCK_SKEW = timedelta(minutes=10)

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


class DocumentType(StrEnum):
    """Identity documents a kiosk reads."""

    CNIE = "CNIE"  # Moroccan national electronic identity card
    PASSPORT = "PASSPORT"
    RESIDENCE_CARD = "RESIDENCE_CARD"  # carte de séjour, foreign residents


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
    document: Document

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


class FingerprintTemplate(BaseModel):
    """One finger's minutiae template (ISO/IEC 19794-2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position: int = Field(ge=1, le=10, description="ISO/IEC 19794-2 finger position 1-10")
    format: Literal["ISO_19794_2_2005"] = "ISO_19794_2_2005"
    quality: int = Field(ge=0, le=100)
    data: Annotated[B64Bytes, Field(min_length=1, max_length=MAX_FINGERPRINT_BYTES)]


_PIL_STRICT = threading.Lock()


@contextmanager
def _strict_pillow() -> Iterator[None]:
    """Make Pillow raise on truncated images for the duration (face_recognition turns
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` on for the whole process when it is imported)."""
    from PIL import ImageFile

    with _PIL_STRICT:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def _check_image(data: bytes) -> bytes:
    """Refuse anything that is not a complete, sensibly sized JPEG, PNG or JPEG 2000 image."""
    from PIL import Image, UnidentifiedImageError  # lazy: only validation needs Pillow

    try:
        with _strict_pillow(), Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG", "JPEG2000"):
                raise ValueError(f"face_image must be JPEG, PNG or JPEG 2000, not {img.format}")
            w, h = img.size
            if max(w, h) > MAX_IMAGE_SIDE or min(w, h) < MIN_IMAGE_SIDE:
                raise ValueError(
                    f"face_image is {w}x{h}; sides must be {MIN_IMAGE_SIDE}-{MAX_IMAGE_SIDE} px"
                )
            img.load()  # decodes every byte: truncated or corrupt data raises here
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
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
            list[FiniteFloat],
            Field(min_length=FACE_TEMPLATE_DIM, max_length=FACE_TEMPLATE_DIM),
        ]
    ] = Field(min_length=1, max_length=MAX_FACE_TEMPLATES)
    face_image: Annotated[B64Bytes, Field(min_length=1, max_length=MAX_FACE_IMAGE_BYTES)]
    fingerprints: list[FingerprintTemplate] = Field(default_factory=list, max_length=10)

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
        return self


def read_message(path: str, timestamp: int) -> bytes:
    """What a kiosk signs to read a status: only the kiosk that sent a packet may read it."""
    return f"GET {path}\n{timestamp}".encode()


class EnrolmentState(StrEnum):
    """Where an enrolment stands (mirrors central_api.enrolment.models.Status)."""

    RECEIVED = "received"
    PROCESSING = "processing"
    ISSUED = "issued"
    DUPLICATE = "duplicate"
    ADJUDICATION = "adjudication"
    REJECTED = "rejected"


class EnrolmentStatus(BaseModel):
    """What the registry tells the kiosk (and the citizen, through the receipt)."""

    packet_id: uuid.UUID
    receipt_number: str
    status: EnrolmentState
    idcs: str | None = None
    message: str
    received_at: datetime
    updated_at: datetime

    @property
    def final(self) -> bool:
        """True once the status will not change without a person's decision."""
        return self.status not in (EnrolmentState.RECEIVED, EnrolmentState.PROCESSING)
