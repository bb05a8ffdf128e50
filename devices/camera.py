"""Cameras and face auto-capture.

``Camera`` is the driver interface: ``OpenCVCamera`` drives a real UVC camera, a video file
or a stream URL through OpenCV; ``SimulatedCamera`` plays frames rendered from real
photographs (``biometrics.synthetic``), with natural motion, a blink, lighting changes and
bad frames, so the kiosk and the tests see realistic streams. ``auto_capture`` reads frames,
gives live feedback, and captures the best frame once quality holds for N frames in a row.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from biometrics import face
from biometrics.synthetic import BACKDROP, FaceModel, Pose, face_model
from devices.exceptions import DeviceError


class CameraError(DeviceError):
    """The camera cannot be opened or stopped delivering frames."""


@dataclass(frozen=True)
class Frame:
    """One RGB frame and when it was taken (seconds, camera clock)."""

    image: np.ndarray
    index: int
    timestamp: float


class Camera(ABC):
    """A source of RGB frames. Use as a context manager."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""

    def close(self) -> None:  # noqa: B027 - optional for subclasses
        """Release the device."""

    def prompt(self, instruction: str) -> None:  # noqa: B027 - only simulations react
        """The kiosk has asked the person to do something (e.g. ``"blink_turn_left"``).

        Real cameras ignore this (the person reads the screen); a simulated person reacts.
        """

    def __enter__(self) -> Camera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenCVCamera(Camera):
    """A camera index (USB/UVC), a video file or a stream URL, read with OpenCV."""

    def __init__(
        self, source: int | str | Path, width: int = 640, height: int = 480, fps: float = 15.0
    ) -> None:
        self.source = source
        self._cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"cannot open camera source {source!r}")
        if isinstance(source, int):
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self._live = isinstance(source, int) or "://" in str(source)
        self._index = 0
        self._start = time.monotonic()

    def read(self) -> Frame | None:
        """The next frame (RGB), or None when a file or stream has ended."""
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        if self._live:
            ts = time.monotonic() - self._start
        else:
            ts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._index, ts)
        self._index += 1
        return frame

    def close(self) -> None:
        """Release the capture device."""
        self._cap.release()


Extra = Literal["none", "no_face", "second_face"]


@dataclass(frozen=True)
class Shot:
    """One scripted frame of a simulated camera."""

    pose: Pose = field(default_factory=Pose)
    extra: Extra = "none"


class SimulatedCamera(Camera):
    """Plays a script of shots of one person rendered from a real photo.

    Time is simulated (``index / fps``), so runs are deterministic and fast.
    """

    def __init__(
        self,
        person: FaceModel,
        script: Sequence[Shot],
        fps: float = 15.0,
        size: tuple[int, int] = (640, 480),
        companion: FaceModel | None = None,
        seed: int = 0,
        responses: Mapping[str, Sequence[Shot]] | None = None,
    ) -> None:
        self.person, self.script, self.fps, self.size = person, list(script), fps, size
        self.companion = companion
        self.responses = {k: list(v) for k, v in (responses or {}).items()}
        self._rng = np.random.default_rng(seed)
        self._index = 0

    def prompt(self, instruction: str) -> None:
        """React to the kiosk: what follows is the scripted response, if there is one."""
        if instruction in self.responses:
            self.script = self.script[: self._index] + self.responses[instruction]

    def read(self) -> Frame | None:
        """Render the next scripted frame, or None when the script is over."""
        if self._index >= len(self.script):
            return None
        shot = self.script[self._index]
        if shot.extra == "no_face":
            image = _empty_scene(self.size, self._rng)
        else:
            image = self.person.render(shot.pose, self.size)
            if shot.extra == "second_face" and self.companion is not None:
                image = _with_second_face(image, self.companion)
        # sensor noise, so that no two frames are identical (as with a real sensor)
        noise = self._rng.normal(0, 1.5, image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        frame = Frame(image, self._index, self._index / self.fps)
        self._index += 1
        return frame

    @classmethod
    def enrolment(
        cls,
        photo: str | Path,
        companion: str | Path | None = None,
        seed: int = 0,
        fps: float = 15.0,
        prelude: bool = True,
        follows_prompts: bool = True,
    ) -> SimulatedCamera:
        """A realistic session: (with ``prelude``) the person steps in too far away,
        off-centre and turned, in poor light, with someone behind them, moving; then holds
        still (with a natural blink), blinks and turns their head left on request, and looks
        back. Without ``prelude`` they step in and hold still at once. They answer the
        prompts ``blink_turn_left`` and ``blink_turn_right`` (unless not ``follows_prompts``:
        someone who does not understand them, or a photo held up, keeps still: liveness
        fails while the face itself is good)."""
        rng = random.Random(seed)

        def natural(seconds: float, **kw: object) -> list[Shot]:
            out = []
            for _ in range(max(1, round(seconds * fps))):
                p = Pose(
                    eye_distance=112 + rng.uniform(-4, 4),
                    centre=(0.5 + rng.uniform(-0.015, 0.015), 0.45 + rng.uniform(-0.015, 0.015)),
                    roll=rng.uniform(-1.5, 1.5),
                    brightness=1 + rng.uniform(-0.05, 0.05),
                )
                # not typed precisely here: kw holds Pose fields by name (a test script's
                # overrides); replace() checks them
                out.append(Shot(replace(p, **kw)))  # type: ignore[arg-type]
            return out

        # The script is written in seconds, so a camera at any frame rate (or one that drops
        # frames) plays the same person: a blink lasts 0.3 s, a head turn 1 s.
        script = (
            [Shot(extra="no_face")] * max(1, round(0.13 * fps))
            + (
                natural(0.27, eye_distance=55)  # too far: move closer
                + natural(0.2, centre=(0.22, 0.45))  # off to one side
                + natural(0.2, yaw=28)  # looking away
                + natural(0.2, brightness=0.35)  # the lamp is off
                + [Shot(s.pose, "second_face") for s in natural(0.2)]  # someone behind
                + natural(0.13, blur=5.0)  # moving
                if prelude
                else []
            )
            + natural(0.27)
            + natural(0.13, eyes_closed=True)  # a natural blink
            + natural(12)  # then stands there, waiting
        )
        profile = (0, -8, -16, -24, -30, -24, -12, -4, 0)  # yaw through a 1 s head turn
        turn = natural(1.0)
        yaws = np.interp(np.linspace(0, 1, len(turn)), np.linspace(0, 1, len(profile)), profile)
        responses = {
            f"blink_turn_{side}": natural(0.2)
            + natural(0.3, eyes_closed=True)
            + natural(0.2)
            + [
                Shot(replace(s.pose, yaw=float(y) if side == "left" else -float(y)))
                for s, y in zip(turn, yaws, strict=True)
            ]
            + natural(12)
            if follows_prompts
            else natural(14)
            for side in ("left", "right")
        }
        comp = face_model(str(companion)) if companion else None
        return cls(
            face_model(str(photo)), script, fps=fps, companion=comp, seed=seed, responses=responses
        )


def _empty_scene(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    ramp = np.linspace(0.92, 1.05, h, dtype=np.float32)[:, None, None]
    base = np.ones((h, w, 3), np.float32) * np.asarray(BACKDROP, np.float32) * ramp
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def _with_second_face(image: np.ndarray, other: FaceModel) -> np.ndarray:
    h, w = image.shape[:2]
    pose = Pose(eye_distance=60, centre=(0.15, 0.35))
    frame = other.render(pose, (w, h))
    outline = np.zeros((h, w), np.float32)
    cv2.ellipse(outline, (int(0.15 * w), int(0.35 * h + 20)), (70, 95), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(outline, (0, 0), 6)[..., None]
    return (image * (1 - mask) + frame * mask).astype(np.uint8)


# ---------------------------------------------------------------------------- auto-capture
# What the person is told, by priority: the first code is what the kiosk shows.
FEEDBACK = {
    "no_face": "step_into_frame",
    "multiple_faces": "one_person_only",
    "too_small": "move_closer",
    "off_centre": "centre_your_face",
    "turned": "look_straight",
    "rolled": "straighten_head",
    "too_dark": "more_light",
    "too_bright": "less_light",
    "uneven_light": "even_light",
    "blurred": "hold_still",
    "eyes_closed": "open_eyes",
    "busy_background": "plain_background",
}


def feedback(quality: face.FaceQuality) -> list[str]:
    """Instructions for the person, most important first (empty when the frame is good)."""
    return [FEEDBACK[r] for r in FEEDBACK if r in quality.reasons]


@dataclass(frozen=True)
class CaptureResult:
    """The outcome of :func:`auto_capture`."""

    status: Literal["captured", "timeout", "stream_ended"]
    image: np.ndarray | None  # the captured RGB frame
    quality: face.FaceQuality | None  # its assessment
    frames: int  # frames examined
    elapsed: float  # seconds of camera time
    last_feedback: list[str]  # what the person was last told


def auto_capture(
    camera: Camera,
    thresholds: face.QualityThresholds = face.DEFAULT_THRESHOLDS,
    consecutive: int = 3,
    timeout_seconds: float = 30.0,
    on_feedback: Callable[[list[str], face.FaceQuality], None] | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> CaptureResult:
    """Read frames until ``consecutive`` frames in a row pass :func:`biometrics.face.assess`;
    return the best of them. Gives up after ``timeout_seconds`` of camera time, or when the
    stream ends. ``on_feedback`` receives the instructions and the assessment of each frame,
    ``on_frame`` each frame itself (the kiosk screen's live preview; never stored).
    """
    run: list[tuple[np.ndarray, face.FaceQuality]] = []
    last: list[str] = []
    count, start, elapsed = 0, None, 0.0
    while (frame := camera.read()) is not None:
        start = frame.timestamp if start is None else start
        elapsed = frame.timestamp - start
        count += 1
        if on_frame is not None:
            on_frame(frame.image)
        quality = face.assess(frame.image, thresholds)
        last = feedback(quality)
        if on_feedback is not None:
            on_feedback(last, quality)
        run = [*run, (frame.image, quality)] if quality.passed else []
        if len(run) >= consecutive:
            image, best = max(run, key=lambda r: r[1].score)
            return CaptureResult("captured", image, best, count, elapsed, [])
        if elapsed >= timeout_seconds:
            return CaptureResult("timeout", None, None, count, elapsed, last)
    return CaptureResult("stream_ended", None, None, count, elapsed, last)


CHALLENGE_SECONDS = 2.0  # how long the blink + head-turn liveness challenge is recorded


def record(camera: Camera, seconds: float = CHALLENGE_SECONDS) -> list[Frame]:
    """The frames of the next ``seconds`` of camera time (fewer if the stream ends), e.g. for
    a liveness challenge: however many frames a busy machine keeps, the person gets the same
    time to act."""
    out: list[Frame] = []
    while (frame := camera.read()) is not None:
        out.append(frame)
        if frame.timestamp - out[0].timestamp >= seconds:
            break
    return out
