"""The kiosk's face stage: auto-capture with feedback, liveness challenge, template, token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from biometrics import face
from devices.camera import CHALLENGE_SECONDS, Camera, auto_capture, record
from devices.firmware import CameraConfig
from kiosk.exceptions import KioskError


@dataclass(frozen=True)
class FaceCapture:
    """What the face stage hands to the packet: a template and the ICAO token image."""

    template: np.ndarray
    token_jpeg: bytes
    quality_score: int
    liveness: face.LivenessResult


class FaceCaptureFailed(KioskError):
    """The face stage could not finish; ``reasons`` say why (quality or liveness codes)."""

    def __init__(
        self,
        stage: Literal["capture", "liveness", "encoding"],
        reasons: list[str],
        capture: FaceCapture | None = None,
    ) -> None:
        super().__init__(f"face {stage} failed: {', '.join(reasons) or 'no reason given'}")
        self.stage, self.reasons = stage, reasons
        self.capture = capture  # a liveness failure's capture (for a supervisor to judge)


def capture_face(
    camera: Camera,
    config: CameraConfig,
    challenge: Literal["left", "right"] = "left",
    on_feedback: Callable[[list[str], face.FaceQuality], None] | None = None,
) -> FaceCapture:
    """Run the face stage on ``camera`` with the device's firmware configuration."""
    thresholds = config.quality.thresholds()
    result = auto_capture(
        camera,
        thresholds,
        consecutive=config.capture.auto_capture_consecutive,
        timeout_seconds=config.capture.timeout_seconds,
        on_feedback=on_feedback,
    )
    if result.status != "captured" or result.image is None or result.quality is None:
        raise FaceCaptureFailed("capture", result.last_feedback or [result.status])
    camera.prompt(f"blink_turn_{challenge}")
    frames = record(camera, CHALLENGE_SECONDS)
    return finish_face(
        result.image,
        [f.image for f in frames],
        challenge,
        result.quality.score,
        config,
        [f.timestamp for f in frames],
    )


def finish_face(
    image: np.ndarray,
    challenge_frames: list[np.ndarray],
    challenge: Literal["left", "right"],
    quality_score: int,
    config: CameraConfig,
    timestamps: list[float] | None = None,
) -> FaceCapture:
    """The kiosk's half of the face stage, on what the camera gave (directly or through the
    device daemon): liveness on the challenge recording (judged by its ``timestamps``), the
    template, the ICAO token image. A liveness failure carries its capture (``capture``)."""
    live = face.liveness(challenge_frames, turn=challenge, timestamps=timestamps)
    try:
        template = face.encode(image, config.quality.thresholds())
    except face.FaceError as exc:
        raise FaceCaptureFailed("encoding", [type(exc).__name__]) from exc
    token = face.token_image(image)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(token, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise FaceCaptureFailed("encoding", ["jpeg_encoding_failed"])
    shot = FaceCapture(template, buf.tobytes(), quality_score, live)
    if not live.passed:
        raise FaceCaptureFailed("liveness", live.reasons, shot)
    return shot
