"""Cameras, auto-capture with feedback, and the kiosk's face stage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from biometrics import face
from biometrics.synthetic import Pose
from devices.camera import (
    Camera,
    CameraError,
    Frame,
    OpenCVCamera,
    auto_capture,
    feedback,
)
from devices.firmware import CameraConfig, by_model
from devices.simulation.camera import Shot, SimulatedCamera
from kiosk.face_capture import FaceCaptureFailed, capture_face

SIM = by_model("simulated-camera")
assert isinstance(SIM, CameraConfig)


@pytest.mark.slow
def test_auto_capture_guides_the_person_then_captures_the_best_frame(faces_dir):
    cam = SimulatedCamera.enrolment(
        faces_dir / "obama__obama.jpg", companion=faces_dir / "biden__biden.jpg", seed=1
    )
    told: list[str] = []
    result = auto_capture(cam, on_feedback=lambda fb, _q: told.append(fb[0] if fb else "ok"))
    assert result.status == "captured" and result.quality is not None
    assert result.quality.passed and result.quality.score >= 80
    said = [t for i, t in enumerate(told) if i == 0 or told[i - 1] != t]
    assert said == [
        "step_into_frame",
        "move_closer",
        "centre_your_face",
        "look_straight",
        "more_light",
        "one_person_only",
        "hold_still",
        "ok",
    ]
    assert told[-3:] == ["ok"] * 3  # three good frames in a row
    assert result.elapsed == pytest.approx((result.frames - 1) / 15)


@pytest.mark.slow
def test_auto_capture_times_out_with_the_last_instruction(faces_dir):
    person = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg").person
    dark = [Shot(Pose(brightness=0.3))] * 40
    result = auto_capture(SimulatedCamera(person, dark, fps=10), timeout_seconds=2.0)
    assert result.status == "timeout" and result.image is None
    assert result.last_feedback == ["more_light"]
    assert result.frames == 21 and result.elapsed == pytest.approx(2.0)
    short = auto_capture(SimulatedCamera(person, dark[:5]), timeout_seconds=30)
    assert short.status == "stream_ended" and short.frames == 5


def test_feedback_is_ordered_by_what_matters_first():
    q = face.FaceQuality(False, 40, ["eyes_closed", "too_dark", "too_small"])
    assert feedback(q) == ["move_closer", "more_light", "open_eyes"]


@pytest.mark.slow
def test_opencv_camera_reads_a_real_video_file(tmp_path: Path, faces_dir):
    video = tmp_path / "session.avi"
    cam = SimulatedCamera.enrolment(faces_dir / "rose_leslie__img2.jpg", prelude=False)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    assert writer.isOpened()
    for _ in range(20):
        frame = cam.read()
        assert frame is not None
        writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    writer.release()
    with OpenCVCamera(video) as real:
        result = auto_capture(real)
    assert result.status == "captured" and result.image is not None
    assert result.image.shape == (480, 640, 3)
    with OpenCVCamera(video) as real:
        frames = [f for f in iter(real.read, None)]
    assert len(frames) == 20 and frames[-1].timestamp == pytest.approx(19 / 15, abs=0.01)
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVCamera(tmp_path / "missing.avi")


@pytest.mark.slow
def test_face_stage_gives_a_template_of_the_right_person_and_a_token(faces_dir, template):
    cam = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False, seed=2)
    shot = capture_face(cam, SIM)
    assert shot.liveness.passed
    assert face.compare(shot.template, template("obama__obama2.jpg")) > 0.93
    assert face.compare(shot.template, template("biden__biden.jpg")) < 0.91
    token = face.decode_image(shot.token_jpeg)
    assert token.shape == (480, 360, 3)


@pytest.mark.slow
def test_face_stage_refuses_a_photo_held_to_the_camera(faces_dir):
    cam = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False, seed=4)
    cam.responses.clear()  # a photo does not react to "blink and turn your head"
    with pytest.raises(FaceCaptureFailed) as e:
        capture_face(cam, SIM)
    assert e.value.stage == "liveness"
    assert "no_turn" in e.value.reasons


@pytest.mark.slow
def test_face_stage_reports_a_capture_that_never_passes(faces_dir):
    person = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg").person
    cam = SimulatedCamera(person, [Shot(Pose(blur=4))] * 200)
    with pytest.raises(FaceCaptureFailed) as e:
        capture_face(cam, SIM)
    assert e.value.stage == "capture" and e.value.reasons == ["hold_still"]


def test_firmware_quality_section_maps_onto_the_thresholds():
    fields = set(face.QualityThresholds.__dataclass_fields__)
    assert set(type(SIM.quality).model_fields) == fields
    assert SIM.quality.thresholds().min_eye_distance_px == 90
    assert np.isclose(SIM.quality.thresholds().max_roll_degrees, 8)


class BusyMachine(Camera):
    """A 15 frames/s camera on a machine so busy that only ``fps`` frames a second are read
    (the others are dropped by the driver): the person's timing does not change."""

    def __init__(self, camera: Camera, fps: float) -> None:
        self.camera, self.gap = camera, 1.0 / fps
        self._last: float | None = None

    def prompt(self, instruction: str) -> None:
        self.camera.prompt(instruction)

    def read(self) -> Frame | None:
        while (frame := self.camera.read()) is not None:
            if self._last is None or frame.timestamp - self._last >= self.gap - 1e-6:
                self._last = frame.timestamp
                return frame
        return None


@pytest.mark.slow
@pytest.mark.parametrize("fps", [15, 7.5, 5])
def test_liveness_passes_a_real_blink_on_a_machine_that_keeps_few_frames(faces_dir, fps):
    cam = BusyMachine(
        SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False, seed=3), fps
    )
    shot = capture_face(cam, SIM)
    assert shot.liveness.passed and shot.liveness.blink and shot.liveness.turn
    # the challenge lasted its 2 s of camera time, whatever the frame count
    assert shot.liveness.frames_used in range(int(2 * fps), int(2 * fps) + 3)


@pytest.mark.slow
def test_liveness_judges_by_time_not_frame_counts(faces_dir):
    cam = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False, seed=3)
    cam.prompt("blink_turn_left")
    frames = [f for f in iter(cam.read, None)][:30]
    images, times = [f.image for f in frames], [f.timestamp for f in frames]
    assert face.liveness(images, timestamps=times).passed
    # the same frames claimed to span 0.6 s: too short to have asked anything of anyone
    assert face.liveness(images, timestamps=[t / 3.3 for t in times]).reasons == ["too_short"]
    # eyes shut for long seconds are not a blink (a photo of closed eyes swapped in and out)
    slow = [t * 4 for t in times]
    result = face.liveness(images, timestamps=slow, max_blink_seconds=0.5)
    assert "no_blink" in result.reasons
    with pytest.raises(ValueError, match="timestamp"):
        face.liveness(images, timestamps=times[:-1])
