"""Face detection, quality, liveness, templates and comparison (face_recognition / dlib + OpenCV).

Images are ``numpy.ndarray`` of dtype uint8, shape (H, W, 3), in **RGB** order (as
``face_recognition`` expects; convert OpenCV's BGR frames with ``cv2.cvtColor``);
:func:`decode_image` turns JPEG / PNG / JPEG 2000 bytes into that.
Templates are 128 float32 values of unit L2 norm; :func:`compare` is their cosine similarity.

Public API: ``detect``, ``assess``, ``encode``, ``compare``, ``threshold_for_fmr``,
``token_image``, ``liveness``, ``verify_against_document``, ``decode_image``,
``template_to_bytes`` / ``template_from_bytes`` (the stored form of templates).
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from types import ModuleType
from typing import Literal

import cv2
import numpy as np

from biometrics.exceptions import BiometricError

TEMPLATE_DIM = 128
# The name and version of what makes templates (stored with every reference: templates of
# different versions are never compared)
ALGORITHM = "dlib-resnet-v1"


@functools.cache
def _models() -> ModuleType:
    """face_recognition, imported on first use: importing it loads dlib's detector, landmark
    and ResNet models (about 1 s and 100 MB), which a process that never sees a face skips."""
    with warnings.catch_warnings():  # face_recognition_models still imports pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import face_recognition
        from PIL import ImageFile

    # face_recognition switches Pillow to accept truncated images for the whole process; keep
    # Pillow strict so that corrupt images are refused everywhere (we decode with OpenCV anyway).
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    module: ModuleType = face_recognition
    return module


# face_recognition holds one dlib detector, shape predictor and ResNet for the whole process,
# and dlib's models are not thread-safe (the network keeps its activations in the model): two
# threads encoding at once corrupt the heap ("double free", seen when the registry checked
# packets in parallel). Every call into them takes this lock; dlib holds the GIL meanwhile
# anyway, so nothing runs slower.
_DLIB = threading.Lock()


# --------------------------------------------------------------------------------- errors
class FaceError(BiometricError):
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


class PoorQualityError(FaceError):
    """A face was found, but the image fails the quality requirements."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(f"face image quality too poor: {', '.join(reasons)}", reasons)


# ----------------------------------------------------------------------------- basic types
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

    def _css(self) -> tuple[int, int, int, int]:
        return (self.top, self.right, self.bottom, self.left)


@dataclass(frozen=True)
class QualityThresholds:
    """Limits for :func:`assess`, after ICAO 9303 / ISO/IEC 19794-5 / ISO/IEC 29794-5.

    Device firmware configurations (``firmware_configs/*.yaml``) set these per camera.
    """

    min_eye_distance_px: float = 90.0  # ISO 19794-5 full frontal: >= 90 px between eye centres
    max_centre_offset: float = 0.20  # eye midpoint from the frame centre, fraction of W / H
    max_roll_degrees: float = 8.0  # tilt of the eye line (ICAO: within +-8 degrees)
    max_yaw_degrees: float = 15.0  # head turned left/right, from landmark asymmetry
    min_sharpness: float = 40.0  # variance of the Laplacian of the face, normalised size
    min_brightness: float = 60.0  # mean grey level of the face (0-255)
    max_brightness: float = 210.0
    max_light_asymmetry: float = 0.25  # |left - right| / mean brightness of the face halves
    min_eye_aspect_ratio: float = 0.17  # below: eyes closed (Soukupova & Cech, 2016)
    max_background_edges: float | None = None  # edge density around the head; None: not checked


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True)
class FaceQuality:
    """The verdict of :func:`assess`."""

    passed: bool
    score: int  # 0-100, higher is better
    reasons: list[str]  # machine-readable failure codes, empty when passed
    metrics: dict[str, float] = field(default_factory=dict)
    box: FaceBox | None = None


# ---------------------------------------------------------------------------- the basics
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


def detect(image: np.ndarray, upsample: int | None = None) -> list[FaceBox]:
    """Faces in an RGB image (dlib HOG detector), largest first.

    ``upsample`` (how many times the image is doubled before searching) defaults to 0 for
    images of 640 px or more on their long side (finds faces from about 80 px: enough for
    enrolment, and 4x faster) and to 1 for smaller images (faces from about 40 px).
    """
    image = _check(image)
    if upsample is None:
        upsample = 0 if max(image.shape[:2]) >= 640 else 1
    with _DLIB:
        found = _models().face_locations(image, upsample, model="hog")
    boxes = [FaceBox(*loc) for loc in found]
    return sorted(boxes, key=lambda b: b.width * b.height, reverse=True)


def _one_face(image: np.ndarray, upsample: int | None = None) -> FaceBox:
    boxes = detect(image, upsample)
    if not boxes and (upsample == 0 or max(image.shape[:2]) >= 640):
        boxes = detect(image, upsample=1)  # a small face: find it, so that it can be measured
    if not boxes:
        raise NoFaceError()
    if len(boxes) > 1:
        raise MultipleFacesError(len(boxes))
    return boxes[0]


# --------------------------------------------------------------------------- measurements
def _landmarks(image: np.ndarray, box: FaceBox) -> dict[str, np.ndarray]:
    with _DLIB:
        (marks,) = _models().face_landmarks(image, [box._css()], model="large")
    return {k: np.asarray(v, dtype=np.float64) for k, v in marks.items()}


def _eye_aspect_ratio(eye: np.ndarray) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) over the six dlib eye points."""
    width = np.linalg.norm(eye[0] - eye[3])
    if width < 1e-6:
        return 0.0
    return float((np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / (2 * width))


@dataclass(frozen=True)
class _Geometry:
    left_eye: np.ndarray  # centre of the eye on the image's left (the person's right eye)
    right_eye: np.ndarray
    eye_distance: float
    roll: float  # degrees, positive: clockwise in the image
    yaw: float  # degrees (approximate), positive: nose towards the image's right
    ear: float  # mean eye aspect ratio


def _geometry(marks: dict[str, np.ndarray]) -> _Geometry:
    le, re = marks["left_eye"].mean(axis=0), marks["right_eye"].mean(axis=0)
    dx, dy = re - le
    roll = math.atan2(dy, dx)
    # Yaw from where the nose tip sits between the two ends of the jaw line, measured along
    # the (roll-corrected) eye line: 0.5 when frontal. Mapped to degrees with asin: a rough
    # but monotonic estimate.
    axis = np.array([math.cos(roll), math.sin(roll)])
    chin = marks["chin"]
    nose = marks["nose_bridge"][-1]  # tip of the nose (dlib point 30)
    a, b, n = (float(axis @ p) for p in (chin[0], chin[16], nose))
    ratio = (n - a) / (b - a) if abs(b - a) > 1e-6 else 0.5
    yaw = math.degrees(math.asin(float(np.clip((ratio - 0.5) * 2, -1, 1))))
    ear = (_eye_aspect_ratio(marks["left_eye"]) + _eye_aspect_ratio(marks["right_eye"])) / 2
    return _Geometry(le, re, float(math.hypot(dx, dy)), math.degrees(math.atan2(dy, dx)), yaw, ear)


def _face_region(gray: np.ndarray, box: FaceBox) -> np.ndarray:
    h, w = gray.shape
    return gray[max(box.top, 0) : min(box.bottom, h), max(box.left, 0) : min(box.right, w)]


def _sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of the face, resized to 128 px wide and normalised to a
    fixed contrast (grey-level std 40), so that neither size nor lighting reads as blur."""
    if face.size == 0:
        return 0.0
    scale = 128 / face.shape[1]
    norm = cv2.resize(
        face, (128, max(1, round(face.shape[0] * scale))), interpolation=cv2.INTER_AREA
    ).astype(np.float32)
    norm = (norm - norm.mean()) * (40.0 / max(float(norm.std()), 1.0))
    return float(cv2.Laplacian(norm, cv2.CV_32F).var())


def _background_edges(gray: np.ndarray, box: FaceBox) -> float:
    """Fraction of edge pixels outside the head (box enlarged to cover hair and neck)."""
    edges = cv2.Canny(gray, 80, 160)
    mask = np.ones_like(gray, dtype=bool)
    pad_x, pad_y = int(box.width * 0.5), int(box.height * 0.7)
    mask[
        max(0, box.top - pad_y) : box.bottom + pad_y, max(0, box.left - pad_x) : box.right + pad_x
    ] = False
    return float((edges[mask] > 0).mean()) if mask.any() else 0.0


def assess(image: np.ndarray, thresholds: QualityThresholds = DEFAULT_THRESHOLDS) -> FaceQuality:
    """Check an RGB image against the quality requirements of an enrolment face.

    Reasons: ``no_face``, ``multiple_faces``, ``too_small``, ``off_centre``, ``rolled``,
    ``turned``, ``blurred``, ``too_dark``, ``too_bright``, ``uneven_light``, ``eyes_closed``,
    ``busy_background``. The score (0-100) is the geometric mean of one margin per check
    (1 = ideal, 0.5 = at its threshold), so a frame can be ranked even when it passes.
    """
    image = _check(image)
    try:
        box = _one_face(image)
    except FaceError as exc:
        return FaceQuality(False, 0, exc.reasons)
    t = thresholds
    g = _geometry(_landmarks(image, box))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    face = _face_region(gray, box)
    h, w = gray.shape
    mid = (g.left_eye + g.right_eye) / 2
    # ICAO puts the eyes a little above the middle of a portrait: aim there, not at the centre
    offset = max(abs(mid[0] / w - 0.5), abs(mid[1] / h - 0.45))
    brightness = float(face.mean()) if face.size else 0.0
    half = face.shape[1] // 2
    left_mean = float(face[:, :half].mean()) if half else 0.0
    right_mean = float(face[:, half:].mean()) if half else 0.0
    asym = abs(left_mean - right_mean) / max(brightness, 1.0)
    sharp = _sharpness(face)
    metrics = {
        "eye_distance_px": round(g.eye_distance, 1),
        "centre_offset": round(float(offset), 3),
        "roll_degrees": round(g.roll, 1),
        "yaw_degrees": round(g.yaw, 1),
        "sharpness": round(sharp, 1),
        "brightness": round(brightness, 1),
        "light_asymmetry": round(asym, 3),
        "eye_aspect_ratio": round(g.ear, 3),
    }
    checks = [  # (reason, value, threshold, higher_is_better)
        ("too_small", g.eye_distance, t.min_eye_distance_px, True),
        ("off_centre", offset, t.max_centre_offset, False),
        ("rolled", abs(g.roll), t.max_roll_degrees, False),
        ("turned", abs(g.yaw), t.max_yaw_degrees, False),
        ("blurred", sharp, t.min_sharpness, True),
        ("too_dark", brightness, t.min_brightness, True),
        ("too_bright", 255 - brightness, 255 - t.max_brightness, True),
        ("uneven_light", asym, t.max_light_asymmetry, False),
        ("eyes_closed", g.ear, t.min_eye_aspect_ratio, True),
    ]
    if t.max_background_edges is not None:
        bg = _background_edges(gray, box)
        metrics["background_edges"] = round(bg, 3)
        checks.append(("busy_background", bg, t.max_background_edges, False))
    reasons = [r for r, v, thr, up in checks if (v < thr if up else v > thr)]
    margins = [_margin(v, thr, up) for _, v, thr, up in checks]
    score = round(100 * math.exp(sum(math.log(m) for m in margins) / len(margins)))
    return FaceQuality(not reasons, score, reasons, metrics, box)


def _margin(value: float, threshold: float, higher_is_better: bool) -> float:
    """1 = ideal, 0.5 = exactly at the threshold, towards 0 = far on the wrong side."""
    ratio = value / threshold if threshold > 0 else 1.0
    m = 0.5 * ratio if higher_is_better else 1 - 0.5 * ratio
    return min(1.0, max(0.01, m))


# ------------------------------------------------------------------------------ templates
def encode(
    image: np.ndarray,
    thresholds: QualityThresholds | None = DEFAULT_THRESHOLDS,
    upsample: int | None = None,
) -> np.ndarray:
    """The face template of the one face in an RGB image: 128 float32 of unit length.

    Raises NoFaceError, MultipleFacesError, or PoorQualityError (with the reasons) when
    ``thresholds`` are given and :func:`assess` fails; pass ``thresholds=None`` to skip the
    quality gate (e.g. for a small document photo whose quality the kiosk cannot change).
    ``upsample`` as for :func:`detect` (without a quality gate): 0 on an ICAO token image,
    whose face fills the frame, is 4x faster than the default for small images.
    """
    image = _check(image)
    if thresholds is not None:
        quality = assess(image, thresholds)
        if quality.reasons == ["no_face"]:
            raise NoFaceError()
        if quality.reasons == ["multiple_faces"]:
            raise MultipleFacesError(len(detect(image)))
        if not quality.passed:
            raise PoorQualityError(quality.reasons)
        assert quality.box is not None
        box = quality.box
    else:
        box = _one_face(image, upsample)
    with _DLIB:
        (vec,) = _models().face_encodings(image, [box._css()], model="small")
    vec = np.asarray(vec, dtype=np.float32)
    return np.asarray(vec / np.linalg.norm(vec), dtype=np.float32)


def template_to_bytes(templates: np.ndarray) -> bytes:
    """One template (shape (128,)) or several ((n, 128)) as little-endian float32 bytes: the
    one stored form of face templates (what :func:`template_from_bytes` reads)."""
    t = np.asarray(templates, dtype=np.float32)
    if t.ndim not in (1, 2) or t.shape[-1] != TEMPLATE_DIM:
        raise ValueError(f"templates must have {TEMPLATE_DIM} values each, not {t.shape}")
    return t.astype("<f4").tobytes()


def template_from_bytes(data: bytes) -> np.ndarray:
    """The templates :func:`template_to_bytes` wrote, as an (n, 128) float32 array; ValueError
    when ``data`` is not a whole number of templates (truncated or not templates at all)."""
    size = 4 * TEMPLATE_DIM
    if not data or len(data) % size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {size}-byte templates")
    return np.frombuffer(data, dtype="<f4").reshape(-1, TEMPLATE_DIM).astype(np.float32)


def compare(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two templates in [-1, 1]; higher means more alike."""
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    if a.shape != (TEMPLATE_DIM,) or b.shape != (TEMPLATE_DIM,):
        raise ValueError(f"templates must have {TEMPLATE_DIM} values")
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# Impostor-score model for threshold_for_fmr: a normal distribution fitted to the cosine
# similarities of all impostor pairs of ../shared/data/faces (bench/bench_face.py prints the
# fit and the empirical rates). A normal tail is an extrapolation beyond what a small set can
# show; it is conservative here (the empirical impostor tail is lighter: see the bench).
IMPOSTOR_MEAN = 0.8060
IMPOSTOR_STD = 0.0396


def threshold_for_fmr(fmr: float) -> float:
    """The similarity threshold whose false-match rate is ``fmr`` under the impostor model."""
    if not 1e-9 <= fmr < 0.5:
        raise ValueError("fmr must be in [1e-9, 0.5)")
    return float(NormalDist(IMPOSTOR_MEAN, IMPOSTOR_STD).inv_cdf(1 - fmr))


@dataclass(frozen=True)
class MatchResult:
    """A 1:1 comparison: the score, the threshold used and the decision."""

    matched: bool
    score: float
    threshold: float
    fmr: float


def verify_against_document(
    live_image: np.ndarray | bytes, document_image: np.ndarray | bytes, fmr: float = 1e-3
) -> MatchResult:
    """Compare the live capture with the document's photo (e.g. the chip's DG2, JPEG or
    JPEG 2000 bytes). The document photo is not quality-gated: it is what the card holds."""
    live = decode_image(live_image) if isinstance(live_image, bytes) else live_image
    doc = decode_image(document_image) if isinstance(document_image, bytes) else document_image
    score = compare(encode(live, thresholds=None), encode(doc, thresholds=None))
    threshold = threshold_for_fmr(fmr)
    return MatchResult(score >= threshold, score, threshold, fmr)


# ---------------------------------------------------------------------------- token image
TOKEN_WIDTH = 360  # ISO/IEC 19794-5 token: eye distance 0.25 W (90 px), height W / 0.75


def token_image(image: np.ndarray, width: int = TOKEN_WIDTH) -> np.ndarray:
    """The ISO/IEC 19794-5 token frontal image of the one face in ``image``.

    Eyes levelled; eye distance 0.25 W; eye midpoint at x = 0.5 W and 0.6 W from the top;
    height W / 0.75 (4:3 portrait). Areas outside the source are filled by edge replication.
    """
    image = _check(image)
    g = _geometry(_landmarks(image, _one_face(image)))
    mid = (g.left_eye + g.right_eye) / 2
    scale = 0.25 * width / g.eye_distance
    m = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), g.roll, scale)
    m[0, 2] += 0.5 * width - mid[0]
    m[1, 2] += 0.6 * width - mid[1]
    height = round(width / 0.75)
    return cv2.warpAffine(
        image,
        m,
        (width, height),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )


# ------------------------------------------------------------------------------- liveness
@dataclass(frozen=True)
class LivenessResult:
    """The verdict of :func:`liveness`."""

    passed: bool
    blink: bool
    turn: bool
    reasons: list[str]  # no_face, multiple_faces, static, no_blink, no_turn, too_few_frames,
    # too_short
    frames_used: int


def liveness(
    frames: Sequence[np.ndarray],
    turn: Literal["left", "right"] | None = "left",
    min_frames: int = 5,
    blink_drop: float = 0.2,
    turn_degrees: float = 15.0,
    timestamps: Sequence[float] | None = None,
    min_seconds: float = 1.5,
    max_blink_seconds: float = 1.0,
) -> LivenessResult:
    """Challenge-response liveness over a short RGB frame sequence.

    The person is asked to blink and (if ``turn``) to turn their head to the given side of
    the image. Passes when one face is tracked throughout, the frames are not all the same
    (a replayed single frame), the eye aspect ratio drops at least ``blink_drop`` below the
    person's open-eye level and comes back within ``max_blink_seconds`` (a blink, not eyes
    kept shut), and the yaw goes past ``turn_degrees`` the requested way and returns.

    Motion is judged by time, not by frame counts: with the frames' ``timestamps`` (seconds,
    camera clock) the recording must last ``min_seconds``, however few frames a busy machine
    kept (a real blink of 0.1-0.4 s is still seen at 5 frames/s: one closed frame between
    open ones suffices). Without timestamps the frames count as evenly spaced at 15 frames/s.

    It does NOT defend against: a video of the person replayed on a screen, a 3D mask, a
    printed photo with cut-out eyes moved by hand, or frames injected behind the camera
    driver. Those need texture/moire/depth analysis or certified (ISO/IEC 30107-3)
    presentation-attack detection hardware.
    """
    reasons: list[str] = []
    if len(frames) < min_frames:
        return LivenessResult(False, False, False, ["too_few_frames"], len(frames))
    if timestamps is not None:
        times = [float(t) for t in timestamps]
        if len(times) != len(frames) or any(b < a for a, b in itertools.pairwise(times)):
            raise ValueError("one non-decreasing timestamp per frame")
        if times[-1] - times[0] < min_seconds:
            return LivenessResult(False, False, False, ["too_short"], len(frames))
    else:
        times = [i / 15.0 for i in range(len(frames))]
    ears: list[float] = []
    yaws: list[float] = []
    prev = None
    still = True
    for frame in frames:
        frame = _check(frame)
        small = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (64, 48))
        if prev is not None and float(np.abs(small.astype(np.int16) - prev).mean()) > 0.5:
            still = False
        prev = small.astype(np.int16)
        try:
            box = _one_face(frame)
        except FaceError as exc:
            return LivenessResult(False, False, False, exc.reasons, len(ears))
        g = _geometry(_landmarks(frame, box))
        ears.append(g.ear)
        yaws.append(g.yaw)
    if still:
        reasons.append("static")
    open_level = float(np.percentile(ears, 75))
    closed = [e < open_level * (1 - blink_drop) for e in ears]
    blink = False
    for i in range(1, len(closed)):
        if closed[i] and not closed[i - 1]:  # eyes shut after being open ...
            j = next((k for k in range(i, len(closed)) if not closed[k]), None)
            # ... and open again soon: the last open frame before and the first one after
            # bound the closure (at 5 frames/s a 0.3 s blink spans at most 0.7 s)
            if j is not None and times[j] - times[i - 1] <= max_blink_seconds:
                blink = True
                break
    if not blink:
        reasons.append("no_blink")
    turned = False
    if turn is not None:
        sign = -1 if turn == "left" else 1
        start = [y for y, t in zip(yaws, times, strict=True) if t - times[0] <= 0.3]
        base = float(np.median(start))
        peak = max(sign * (y - base) for y in yaws)
        turned = peak >= turn_degrees and abs(yaws[-1] - base) < turn_degrees
        if not turned:
            reasons.append("no_turn")
    return LivenessResult(not reasons, blink, turned, reasons, len(ears))
