"""The registry's own templates, made from the packet's images: the face template from the
ICAO token image (ISO/IEC 19794-5) and each finger's template from its ISO/IEC 19794-4 image.
The kiosk's templates only serve the kiosk's local checks, and as a check here: a kiosk face
template that is not the face of the token image means the packet is not what an honest kiosk
makes (it is rejected).

It runs in processes of its own (``worker._Extractors``), for three reasons: dlib holds the GIL
for a whole encoding (~0.15 s) and LEADER's network takes seconds per finger, which must not
stall intake; WSQ is decoded by C code, whose crash on a hostile image kills one process and
not the registry; and a batch's enrolments are extracted side by side.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from biometrics import face
from biometrics import fingerprint as fp


@dataclass(frozen=True)
class Extraction:
    """What the registry made of one enrolment's images.

    ``rejected``: why the packet is rejected (``face_image_unusable``,
    ``face_template_mismatch``, ``finger_image_corrupt``), or None. ``face``: the registry's
    face template (stored form, :func:`biometrics.face.template_to_bytes`). ``fingers``: the
    registry's ISO/IEC 19794-2 record per position that had an image; ``unusable``: positions
    whose image gave no template (they count as missing)."""

    rejected: str | None = None
    face: bytes | None = None
    fingers: dict[int, bytes] = field(default_factory=dict)
    unusable: tuple[int, ...] = ()


def face_template(face_image: bytes) -> np.ndarray:
    """The registry's face template of a token image, (1, 128) float32; FaceError."""
    own = face.encode(face.decode_image(face_image), thresholds=None, upsample=0)
    return np.asarray(own, dtype=np.float32).reshape(1, face.TEMPLATE_DIM)


def finger_template(record: bytes, position: int) -> fp.FingerprintTemplate:
    """The registry's template of an ISO/IEC 19794-4 finger image record at ``position``;
    FingerImageError (corrupt image) or FingerprintError (no usable template)."""
    image = fp.FingerImage.from_iso19794_4(record)
    return fp.extract(image.pixels, dpi=image.dpi, position=position)


def extract_references(
    face_image: bytes,
    kiosk_faces: np.ndarray,
    agreement: float,
    finger_images: dict[int, bytes],
) -> Extraction:
    """The registry's templates of one enrolment: the face of ``face_image`` (checked against
    each of the kiosk's face templates to ``agreement``) and a template per finger image."""
    try:
        own = face_template(face_image)
    except face.FaceError:
        return Extraction("face_image_unusable")
    kiosk = np.asarray(kiosk_faces, dtype=np.float32)
    kiosk = kiosk / np.linalg.norm(kiosk, axis=1, keepdims=True)
    if float((kiosk @ own[0]).min()) < agreement:
        return Extraction("face_template_mismatch")
    fingers: dict[int, bytes] = {}
    unusable: list[int] = []
    for position, record in sorted(finger_images.items()):
        try:
            fingers[position] = finger_template(record, position).to_iso19794_2()
        except fp.FingerImageError:
            return Extraction("finger_image_corrupt")
        except fp.FingerprintError:
            unusable.append(position)
    return Extraction(None, face.template_to_bytes(own), fingers, tuple(unusable))


def exit_with_parent(parent_pid: int, every: float = 1.0) -> None:
    """In an extraction process: exit as soon as ``parent_pid`` (the registry process that
    started it) is gone. A registry killed -9 cannot shut its workers down, and each holds
    dlib's models (~190 MB): 131 of them were found orphaned after a day of tests."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
