"""Cameras and face auto-capture.

``Camera`` is the driver interface: ``OpenCVCamera`` drives a real UVC camera, a video file
or a stream URL through OpenCV; the simulated camera (:mod:`devices.simulation.camera`, tests
and demo only) plays frames rendered from real photographs. ``auto_capture`` reads frames,
gives live feedback, and captures the best frame once quality holds for N frames in a row.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from biometrics import face
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
