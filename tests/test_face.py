"""biometrics.face on the real shared photos."""

from __future__ import annotations

import numpy as np
import pytest

from biometrics import face


def test_template_is_unit_length_and_deterministic(template, photo):
    t = template("obama__obama.jpg")
    assert t.shape == (128,) and t.dtype == np.float32
    assert np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)
    again = face.encode(face.decode_image(photo("obama__obama.jpg")))
    assert np.allclose(t, again)


def test_genuine_pairs_score_above_impostor_pairs(template):
    genuine = face.compare(template("obama__obama.jpg"), template("obama__obama2.jpg"))
    impostor = face.compare(template("obama__obama.jpg"), template("biden__biden.jpg"))
    assert genuine > 0.93 > 0.91 > impostor


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
