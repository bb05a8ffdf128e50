"""biometrics.face on the real shared photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from biometrics import face, synthetic
from biometrics.synthetic import Pose
from devices.simulation.camera import SimulatedCamera


def test_template_is_unit_length_and_deterministic(template, photo):
    t = template("obama__obama.jpg")
    assert t.shape == (128,) and t.dtype == np.float32
    assert np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)
    again = face.encode(face.decode_image(photo("obama__obama.jpg")), thresholds=None)
    assert np.allclose(t, again)


def test_genuine_pairs_score_above_impostor_pairs(template):
    genuine = face.compare(template("obama__obama.jpg"), template("obama__obama2.jpg"))
    impostor = face.compare(template("obama__obama.jpg"), template("biden__biden.jpg"))
    assert genuine > 0.93 > 0.91 > impostor


@pytest.mark.slow
def test_no_face_multiple_faces_and_corrupt_bytes(faces_dir, photo):
    with pytest.raises(face.NoFaceError) as e:
        face.encode(face.decode_image((faces_dir / "group/no_face_dogs.jpg").read_bytes()))
    assert e.value.reasons == ["no_face"]
    with pytest.raises(face.MultipleFacesError) as m:
        face.encode(face.decode_image((faces_dir / "group/obama_and_biden.jpg").read_bytes()))
    assert m.value.count >= 2 and m.value.reasons == ["multiple_faces"]
    with pytest.raises(face.CorruptImageError):
        face.decode_image(b"definitely not a jpeg")
    with pytest.raises(face.CorruptImageError):
        face.decode_image(b"")
    with pytest.raises(ValueError):
        face.encode(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError):
        face.compare(np.zeros(127), np.zeros(128))


# --------------------------------------------------------------------- quality (assess)
@pytest.fixture(scope="module")
def person(faces_dir):
    return synthetic.face_model(str(faces_dir / "tom_cruise__img1.jpg"))


GOOD = Pose()


@pytest.mark.parametrize(
    ("pose", "reason"),
    [
        (Pose(eye_distance=55), "too_small"),
        (Pose(centre=(0.2, 0.45)), "off_centre"),
        (Pose(roll=14), "rolled"),
        (Pose(yaw=-30), "turned"),
        (Pose(blur=5.0), "blurred"),
        (Pose(brightness=0.35), "too_dark"),
        (Pose(brightness=1.9), "too_bright"),
        (Pose(side_light=0.7), "uneven_light"),
        (Pose(eyes_closed=True), "eyes_closed"),
    ],
)
def test_each_quality_problem_is_named(person, pose: Pose, reason: str):
    good = face.assess(person.render(GOOD))
    assert good.passed and good.reasons == [] and good.score >= 80
    bad = face.assess(person.render(pose))
    assert not bad.passed
    assert reason in bad.reasons
    assert bad.score < good.score


def test_no_face_multiple_faces_and_busy_background(faces_dir, person):
    dogs = face.decode_image((faces_dir / "group/no_face_dogs.jpg").read_bytes())
    assert face.assess(dogs).reasons == ["no_face"]
    two = face.decode_image((faces_dir / "group/two_people.jpg").read_bytes())
    assert face.assess(two).reasons == ["multiple_faces"]
    strict = face.QualityThresholds(max_background_edges=0.01)
    busy = face.assess(face.decode_image((faces_dir / "obama__obama.jpg").read_bytes()), strict)
    assert "busy_background" in busy.reasons
    plain = face.assess(person.render(GOOD), strict)  # the simulated plain backdrop
    assert "busy_background" not in plain.reasons


def test_encode_refuses_poor_quality_and_names_the_reasons(faces_dir):
    small = face.decode_image((faces_dir / "obama__small.jpg").read_bytes())
    with pytest.raises(face.PoorQualityError) as e:
        face.encode(small)
    assert e.value.reasons == ["too_small"]
    assert face.encode(small, thresholds=None).shape == (128,)  # the gate can be skipped


# ------------------------------------------------------------------------ token image
def test_token_image_puts_the_eyes_where_iso_19794_5_says(faces_dir):
    src = face.decode_image((faces_dir / "biden__biden.jpg").read_bytes())  # rolled 13 deg
    token = face.token_image(src)
    assert token.shape == (480, 360, 3)
    q = face.assess(token)
    g = face._geometry(face._landmarks(token, face.detect(token)[0]))
    mid = (g.left_eye + g.right_eye) / 2
    assert abs(g.roll) < 2.0  # levelled
    assert g.eye_distance == pytest.approx(0.25 * 360, rel=0.08)
    assert mid[0] == pytest.approx(0.5 * 360, abs=6)
    assert mid[1] == pytest.approx(0.6 * 360, abs=6)
    assert "rolled" not in q.reasons


# -------------------------------------------------------------------------- compare, 1:1
def test_threshold_for_fmr_is_monotonic_and_bounded():
    ts = [face.threshold_for_fmr(f) for f in (1e-2, 1e-3, 1e-4, 1e-6)]
    assert ts == sorted(ts) and 0.8 < ts[0] < ts[-1] < 1.0
    with pytest.raises(ValueError):
        face.threshold_for_fmr(0.7)


@pytest.mark.slow
def test_verify_against_a_jpeg2000_chip_photo(faces_dir, person):
    live = person.render(GOOD)
    chip = cv2.imread(str(faces_dir / "tom_cruise__img1.jpg"))
    chip = cv2.resize(chip, (240, 320))  # DG2 photos are small
    ok, jp2 = cv2.imencode(".jp2", chip)
    assert ok and jp2.tobytes()[4:8] == b"jP  "  # a real JPEG 2000 file
    same = face.verify_against_document(live, jp2.tobytes())
    assert same.matched and same.score >= same.threshold
    other = cv2.imencode(".jp2", cv2.imread(str(faces_dir / "biden__biden2.jpg")))[1]
    diff = face.verify_against_document(live, other.tobytes())
    assert not diff.matched and diff.score < diff.threshold
    with pytest.raises(face.CorruptImageError):
        face.verify_against_document(live, jp2.tobytes()[:200])


# -------------------------------------------------------------------------- liveness
def _frames(cam: SimulatedCamera, n: int) -> list[np.ndarray]:
    return [f.image for f in iter(cam.read, None)][:n]


@pytest.mark.slow
def test_liveness_passes_a_live_person_who_blinks_and_turns(faces_dir):
    cam = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False)
    cam.prompt("blink_turn_left")
    result = face.liveness(_frames(cam, 30), turn="left")
    assert result.passed and result.blink and result.turn, result


@pytest.mark.slow
def test_liveness_rejects_the_wrong_turn_a_still_photo_and_a_replayed_frame(faces_dir):
    cam = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False)
    cam.prompt("blink_turn_right")
    frames = _frames(cam, 30)
    wrong = face.liveness(frames, turn="left")
    assert not wrong.passed and "no_turn" in wrong.reasons and wrong.blink

    # a printed photo held up: it moves a little, but never blinks nor turns
    photo = SimulatedCamera.enrolment(faces_dir / "obama__obama.jpg", prelude=False, seed=5)
    held = [f for f in _frames(photo, 40)][-20:]
    still = face.liveness(held)
    assert not still.passed and {"no_blink", "no_turn"} <= set(still.reasons)

    replay = face.liveness([frames[0]] * 12)
    assert not replay.passed and "static" in replay.reasons
    assert face.liveness(frames[:3]).reasons == ["too_few_frames"]


def test_template_codec_round_trips_and_refuses_truncated_bytes():
    rng = np.random.default_rng(3)
    one = rng.normal(size=face.TEMPLATE_DIM).astype(np.float32)
    many = rng.normal(size=(3, face.TEMPLATE_DIM)).astype(np.float32)
    assert np.array_equal(face.template_from_bytes(face.template_to_bytes(one)), one[None, :])
    assert np.array_equal(face.template_from_bytes(face.template_to_bytes(many)), many)
    data = face.template_to_bytes(many)
    for bad in (data[:-1], data[: 4 * face.TEMPLATE_DIM - 4], b""):
        with pytest.raises(ValueError, match="whole number"):
            face.template_from_bytes(bad)
    with pytest.raises(ValueError, match="128 values"):
        face.template_to_bytes(np.zeros(127, np.float32))
