"""The simulated camera: frames rendered from real photographs (``biometrics.synthetic``),
with natural motion, a blink, lighting changes and bad frames, so the kiosk and the tests see
realistic streams (tests and demo only)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from biometrics.synthetic import BACKDROP, FaceModel, Pose, face_model
from devices.camera import Camera, Frame

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
