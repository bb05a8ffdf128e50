"""Fingerprints: synthetic data, extraction, ISO/IEC 19794-2, matching, search, bad input."""

from __future__ import annotations

import contextlib
import math
import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biometrics import fingerprint as fp
from biometrics import synthetic
from devices.fingerprint import FingerprintReaderError, SimulatedFingerprintReader


@pytest.fixture(scope="module")
def fingers() -> dict[tuple[int, int], fp.FingerprintTemplate]:
    """3 synthetic fingers x 3 impressions, extracted once."""
    out = {}
    for f in range(3):
        master = synthetic.master_fingerprint(500 + f)
        for i in range(3):
            out[(f, i)] = fp.extract(synthetic.fingerprint_impression(master, i))
    return out


@pytest.fixture(scope="module")
def finger() -> tuple[fp.FingerprintTemplate, fp.FingerprintTemplate]:
    """Two impressions of one synthetic finger, extracted (the format tests need no more)."""
    master = synthetic.master_fingerprint(500)
    return fp.extract(synthetic.fingerprint_impression(master, 0)), fp.extract(
        synthetic.fingerprint_impression(master, 1)
    )


@pytest.mark.slow
def test_generator_is_deterministic_and_varies_impressions():
    a = synthetic.master_fingerprint(42)
    assert np.array_equal(a.ridges, synthetic.master_fingerprint(42).ridges)
    assert a.finger_class in synthetic.FINGER_CLASSES
    i0, i1 = (synthetic.fingerprint_impression(a, k) for k in (0, 1))
    assert i0.dtype == np.uint8 and i0.shape == (400, 320)
    assert np.array_equal(i0, synthetic.fingerprint_impression(a, 0))
    assert not np.array_equal(i0, i1)
    classes = {synthetic.master_fingerprint(s, size=(96, 96)).finger_class for s in range(40)}
    assert {"left_loop", "right_loop", "whorl"} <= classes


@pytest.mark.slow
def test_extraction_is_deterministic_and_plausible(fingers):
    master = synthetic.master_fingerprint(500)
    again = fp.extract(synthetic.fingerprint_impression(master, 0))
    assert again == fingers[(0, 0)]
    t = fingers[(0, 0)]
    assert 15 <= len(t.minutiae) <= 120 and t.quality >= 60
    assert {m.kind for m in t.minutiae} <= {"ending", "bifurcation"}
    assert all(0 <= m.x < t.width and 0 <= m.y < t.height for m in t.minutiae)


@pytest.mark.slow
def test_genuine_pairs_outscore_impostor_pairs(fingers):
    genuine = [fp.compare(fingers[(f, 0)], fingers[(f, i)]) for f in range(3) for i in (1, 2)]
    impostor = [
        fp.compare(fingers[(a, 0)], fingers[(b, 0)]) for a in range(3) for b in range(3) if a != b
    ]
    assert min(genuine) > max(impostor)
    assert min(genuine) >= 10  # bits: FMR about 1e-3 or better on the calibration data
    assert max(impostor) < 7


@pytest.mark.slow
def test_matching_is_rotation_and_translation_invariant(fingers):
    master = synthetic.master_fingerprint(501)
    img = synthetic.fingerprint_impression(master, 0)
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
    m[:, 2] += (12, -18)
    moved = cv2.warpAffine(img, m, (w, h), borderValue=235)
    assert fp.compare(fingers[(1, 0)], fp.extract(moved)) >= 10


def test_iso_19794_2_round_trip_is_exact(finger):
    t, other = finger
    data = t.to_iso19794_2()
    assert data[:8] == b"FMR\x00 20\x00"
    assert struct.unpack(">I", data[8:12])[0] == len(data) == 24 + 4 + 6 * len(t.minutiae) + 2
    back = fp.FingerprintTemplate.from_iso19794_2(data)
    assert back.to_iso19794_2() == data
    assert [(m.x, m.y, m.kind, m.quality) for m in back.minutiae] == [
        (m.x, m.y, m.kind, m.quality) for m in t.minutiae
    ]
    assert all(
        abs(math.remainder(a.angle - b.angle, 2 * math.pi)) <= math.pi / 256 + 1e-9
        for a, b in zip(back.minutiae, t.minutiae, strict=True)
    )
    assert fp.compare(back, other) >= 10  # quantised angles still match


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 399),
            st.integers(0, 499),
            st.integers(0, 255),
            st.sampled_from(["ending", "bifurcation", "other"]),
            st.integers(0, 100),
        ),
        max_size=60,
    ),
    st.integers(0, 10),
    st.integers(0, 100),
)
def test_iso_round_trip_property(rows, position, quality):
    mins = tuple(fp.Minutia(x, y, a * 2 * math.pi / 256, k, q) for x, y, a, k, q in rows)
    t = fp.FingerprintTemplate(400, 500, mins, 500, quality, position)
    data = t.to_iso19794_2()
    assert fp.FingerprintTemplate.from_iso19794_2(data).to_iso19794_2() == data


def test_corrupt_and_truncated_records_are_refused(finger):
    data = finger[0].to_iso19794_2()
    bad = {
        "truncated": data[:-7],
        "short": data[:20],
        "magic": b"XMR\x00" + data[4:],
        "version": data[:4] + b" 30\x00" + data[8:],
        "length": data[:8] + struct.pack(">I", len(data) + 1) + data[12:],
        "views": data[:22] + b"\x02" + data[23:],
        "type3": data[:28] + bytes([data[28] | 0xC0]) + data[29:],
        "x_out": data[:28] + struct.pack(">H", (data[28] & 0xC0) << 8 | 0x3FFF) + data[30:],
        "ext": data[:-2] + b"\x00\x05",
    }
    for name, blob in bad.items():
        with pytest.raises(fp.TemplateFormatError):
            fp.FingerprintTemplate.from_iso19794_2(blob)
        assert name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_crash_the_parser(blob):
    with contextlib.suppress(fp.TemplateFormatError):  # any other exception fails the test
        fp.FingerprintTemplate.from_iso19794_2(blob)


@pytest.mark.slow
def test_bad_images_get_clear_errors():
    finger = synthetic.fingerprint_impression(synthetic.master_fingerprint(502), 0)
    cases = {
        "blank": (np.full((400, 320), 235, np.uint8), "no_fingerprint"),
        "black": (np.zeros((400, 320), np.uint8), "no_fingerprint"),
        "tiny": (finger[:60, :60], "too_small"),
        "noise": (
            np.random.default_rng(0).integers(0, 256, (400, 320)).astype(np.uint8),
            "no_fingerprint",
        ),
        "float": (finger.astype(np.float32), "bad_image"),
    }
    for name, (img, reason) in cases.items():
        with pytest.raises(fp.FingerprintError) as e:
            fp.extract(img)
        assert e.value.reason == reason, name
        assert fp.quality(img) < 20 or reason == "bad_image"
    # 16-bit and RGB are converted; 1000 dpi is resampled, or refused if configured so
    assert fp.extract(finger.astype(np.uint16) << 8).minutiae
    assert fp.extract(cv2.cvtColor(finger, cv2.COLOR_GRAY2RGB)).minutiae
    big = cv2.resize(finger, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    t = fp.extract(big, dpi=1000)
    assert (t.width, t.height, t.dpi) == (320, 400, 500)
    with pytest.raises(fp.FingerprintError) as e:
        fp.extract(big, dpi=1000, settings=fp.ExtractionSettings(on_other_dpi="refuse"))
    assert e.value.reason == "wrong_dpi"


@pytest.mark.slow
def test_quality_falls_as_the_image_degrades():
    img = synthetic.fingerprint_impression(synthetic.master_fingerprint(503), 0)
    clean = fp.quality(img)
    noisy = [
        fp.quality(
            np.clip(img + np.random.default_rng(1).normal(0, s, img.shape), 0, 255).astype(np.uint8)
        )
        for s in (15, 40, 80)
    ]
    blurred = [fp.quality(cv2.GaussianBlur(img, (0, 0), s)) for s in (1.5, 3.5)]
    part = img.copy()
    part[160:] = 235
    assert clean >= 80
    assert clean >= noisy[0] > noisy[1] > noisy[2]
    assert clean > blurred[0] > blurred[1]
    assert clean > fp.quality(part)


@pytest.mark.slow
def test_search_finds_the_mate_with_and_without_preselection(fingers):
    gallery = fp.FingerprintGallery()
    for f in range(3):
        gallery.add(f"finger-{f}", fingers[(f, 0)])
    for f in range(3):
        assert gallery.search(fingers[(f, 2)], top_k=1, preselect=None)[0][0] == f"finger-{f}"
        assert gallery.search(fingers[(f, 2)], top_k=1, preselect=2)[0][0] == f"finger-{f}"


@pytest.mark.slow
def test_simulated_reader_serves_new_impressions_of_the_same_finger():
    reader = SimulatedFingerprintReader(person=7, missing={10})
    a, b = reader.capture(2), reader.capture(2)
    assert a.shape == (400, 320) and not np.array_equal(a, b)
    assert fp.compare(fp.extract(a), fp.extract(b)) >= 10
    assert fp.compare(fp.extract(a), fp.extract(reader.capture(3))) < 7
    with pytest.raises(FingerprintReaderError, match="left little"):
        reader.capture(10)
    with pytest.raises(ValueError):
        reader.capture(11)
