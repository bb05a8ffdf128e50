"""Face detection, templates and comparison (face_recognition / dlib + OpenCV).

Images are ``numpy.ndarray`` of dtype uint8, shape (H, W, 3), in **RGB** order (as
``face_recognition`` expects); :func:`decode_image` turns file bytes into that.
Templates are 128 float32 values of unit L2 norm; :func:`compare` is their cosine similarity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np

with warnings.catch_warnings():  # face_recognition_models still imports pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import face_recognition

TEMPLATE_DIM = 128


class FaceError(ValueError):
    """An image cannot give a face template; ``reasons`` holds machine-readable codes."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


class CorruptImageError(FaceError):
    """The bytes are not a decodable image."""

    def __init__(self, message: str = "image data is corrupt or not an image") -> None:
        super().__init__(message, ["corrupt_image"])


class NoFaceError(FaceError):
    """No face was found."""

    def __init__(self) -> None:
        super().__init__("no face found in the image", ["no_face"])


class MultipleFacesError(FaceError):
    """More than one face was found; enrolment needs exactly one."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} faces found; exactly one is required", ["multiple_faces"])
        self.count = count


@dataclass(frozen=True)
class FaceBox:
    """A detected face, in pixel coordinates of the image (right and bottom exclusive)."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def width(self) -> int:
        """Box width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Box height in pixels."""
        return self.bottom - self.top


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG/JPEG 2000 bytes to an RGB uint8 array; raises CorruptImageError."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise CorruptImageError()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise TypeError("image must be a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("image must have shape (H, W, 3), RGB")
    return np.ascontiguousarray(image)


def detect(image: np.ndarray, upsample: int = 1) -> list[FaceBox]:
    """Faces in an RGB image (dlib HOG detector), largest first."""
    boxes = [
        FaceBox(*loc)
        for loc in face_recognition.face_locations(_check(image), upsample, model="hog")
    ]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def encode(image: np.ndarray) -> np.ndarray:
    """The face template of the one face in an RGB image: 128 float32 of unit length.

    Raises NoFaceError or MultipleFacesError.
    """
    image = _check(image)
    boxes = detect(image)
    if not boxes:
        raise NoFaceError()
    if len(boxes) > 1:
        raise MultipleFacesError(len(boxes))
    b = boxes[0]
    (vec,) = face_recognition.face_encodings(image, [(b.top, b.right, b.bottom, b.left)])
    vec = np.asarray(vec, dtype=np.float32)
    return vec / np.linalg.norm(vec)


def compare(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two templates in [-1, 1]; higher means more alike."""
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    if a.shape != (TEMPLATE_DIM,) or b.shape != (TEMPLATE_DIM,):
        raise ValueError(f"templates must have {TEMPLATE_DIM} values")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
