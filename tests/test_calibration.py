"""Calibration procedures: each passes on a good target and fails, saying what to do, on a
faulty one (simulated targets, ``devices.simulation.targets``); results and device events
recorded in the device history and read back; the card reader's round trip through pcscd."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from devices import calibration as cal
from devices import card, firmware
from devices.firmware import CameraConfig, CardReaderConfig, FingerprintConfig
from devices.history import DeviceHistory, HistoryError
from devices.simulation import targets

CAMERA = firmware.by_model("simulated-camera", CameraConfig)
SCANNER = firmware.by_model("simulated-fingerprint", FingerprintConfig)
READER_CONFIG = firmware.by_model("pcsc-reader", CardReaderConfig)


# ------------------------------------------------------------------------------- camera
def test_grey_card_exposure_and_white_balance():
    good = cal.exposure_white_balance(targets.grey_card(), CAMERA)
    assert good.passed, good.message
    assert 115 < good.measured["grey_level"] < 121
    assert abs(good.measured["r_over_g"] - 1) < 0.01 and abs(good.measured["b_over_g"] - 1) < 0.01
    assert good.targets == {"grey_level_min": 106, "grey_level_max": 131, "wb_tolerance": 0.08}
    assert (good.procedure, good.device_model) == ("exposure_white_balance", "simulated-camera")

    dim = cal.exposure_white_balance(targets.grey_card(dim=0.5), CAMERA)  # one stop short
    assert not dim.passed and dim.measured["grey_level"] < 90
    assert dim.message.startswith("too dark: the grey card reads 85 (target 106-131)")
    assert "raise the exposure" in dim.message
    bright = cal.exposure_white_balance(targets.grey_card(dim=1.6), CAMERA)
    assert not bright.passed and bright.message.startswith("too bright")

    warm = cal.exposure_white_balance(targets.grey_card(wb=(1.15, 1.0, 0.85)), CAMERA)
    assert not warm.passed and warm.measured["r_over_g"] == pytest.approx(1.15, abs=0.01)
    assert warm.message.startswith("colour cast (warm: too red/yellow): R/G 1.15, B/G 0.85")
    assert "set the camera's white balance" in warm.message
    cold = cal.exposure_white_balance(targets.grey_card(wb=(0.9, 1.0, 1.15)), CAMERA)
    assert not cold.passed and "cold: too blue" in cold.message

    missed = cal.exposure_white_balance(targets.focus_chart(), CAMERA)  # not a grey card
    assert not missed.passed and "does not fill the centre" in missed.message


def test_focus_on_a_slanted_edge():
    good = cal.focus(targets.focus_chart(), CAMERA)
    assert good.passed and good.measured["mtf50"] > 0.28, good.measured
    assert good.measured["edge_angle_degrees"] == pytest.approx(5, abs=0.2)
    # the measure follows a known blur: a Gaussian of sigma s has MTF50 0.187 / s (here with
    # the lens's own 0.55 px and the pixel's aperture)
    blurred = cal.focus(targets.focus_chart(blur_sigma=2.0), CAMERA)
    assert not blurred.passed and 0.07 < blurred.measured["mtf50"] < 0.11, blurred.measured
    assert blurred.message.startswith("out of focus: MTF50 0.09")
    assert "focus it on the chart" in blurred.message
    other_way = cal.focus(targets.focus_chart(angle_deg=-7), CAMERA)
    assert other_way.passed and other_way.measured["edge_angle_degrees"] == pytest.approx(-7, 0.1)
    turned = np.ascontiguousarray(np.rot90(targets.focus_chart(size=(480, 640))))  # horizontal
    assert cal.focus(turned, CAMERA).passed
    straight = cal.focus(targets.focus_chart(angle_deg=0), CAMERA)
    assert not straight.passed and "tilted about 5°" in straight.message
    nothing = cal.focus(targets.flat_field(), CAMERA)
    assert not nothing.passed and nothing.message.startswith("no slanted edge found")


def test_flat_field_uniformity():
    good = cal.uniformity(targets.flat_field(vignetting=0.08), CAMERA)
    assert good.passed and good.measured["vignetting"] < 0.1 and good.measured["grid_ratio"] < 1.1
    shaded = cal.uniformity(targets.flat_field(vignetting=0.3), CAMERA)
    assert not shaded.passed and shaded.measured["vignetting"] > 0.2
    assert shaded.message.startswith(
        "vignetting: the darkest corner gets 75 % of the centre's light (at least 80 %)"
    )
    uneven = cal.uniformity(targets.flat_field(vignetting=0.05, tilt=0.4), CAMERA)
    assert not uneven.passed and "uneven field: the brightest area is 1.4" in uneven.message
    clipped = cal.uniformity(targets.flat_field(level=255), CAMERA)
    assert not clipped.passed and "clipped" in clipped.message


def test_person_at_the_standing_mark(faces_dir: Path):
    photo = faces_dir / "obama__obama.jpg"
    good = cal.geometry(targets.person_at_mark(photo, 110), CAMERA)
    assert good.passed, good.message
    assert good.measured["eye_distance_px"] == pytest.approx(110, abs=3)
    far = cal.geometry(targets.person_at_mark(photo, 70), CAMERA)
    assert not far.passed and far.message.startswith(
        "too far: 70 px between the eyes (target 95-120) — move the standing mark closer"
    )
    near = cal.geometry(targets.person_at_mark(photo, 136), CAMERA)
    assert not near.passed and near.message.startswith("too close: 13")
    aside = cal.geometry(targets.person_at_mark(photo, 110, centre=(0.66, 0.45)), CAMERA)
    assert not aside.passed and "camera aimed off the mark" in aside.message
    empty = cal.geometry(targets.flat_field(), CAMERA)
    assert not empty.passed and empty.message.startswith("no face in view")


# -------------------------------------------------------------------------- fingerprint
def test_blank_platen():
    good = cal.platen(targets.blank_platen(), SCANNER)
    assert good.passed, good.message
    assert good.measured["dirt_spots"] == 0 and good.measured["non_uniformity"] < 6
    dirty = cal.platen(targets.blank_platen(dirt=3, seed=3), SCANNER)
    assert not dirty.passed and dirty.measured["dirt_spots"] == 3
    largest = dirty.measured["largest_spot_mm"]
    assert 0.8 <= largest <= 2.7
    assert dirty.message == (
        f"platen dirty: 3 spots (largest {largest:.1f} mm) — clean the glass and run again"
    )
    # the simulated spots are 0.8 - 2.5 mm: each one found, none made up, over many platens
    for seed in range(6):
        for dirt in (0, 2):
            found = cal.platen(targets.blank_platen(dirt=dirt, seed=seed), SCANNER)
            assert found.measured["dirt_spots"] == dirt, (seed, dirt)
    dim_lamp = cal.platen(targets.blank_platen(shading=30), SCANNER)
    assert not dim_lamp.passed and dim_lamp.measured["non_uniformity"] > 12
    assert dim_lamp.message.startswith("platen unevenly lit: 0.25-inch areas differ by up to")


def test_resolution_from_a_ridge_spacing_grating():
    good = cal.resolution(targets.ridge_target(dpi_actual=500), SCANNER)
    assert good.passed and good.measured["dpi_x"] == pytest.approx(500, abs=0.5)
    within = cal.resolution(targets.ridge_target(dpi_actual=503, angle_deg=-3), SCANNER)
    assert within.passed and within.measured["dpi_x"] == pytest.approx(503, abs=0.5)
    # a reader that really scans at 450 dpi while declaring 500
    wrong = cal.resolution(targets.ridge_target(dpi_actual=450), SCANNER)
    assert not wrong.passed and wrong.measured["dpi_x_error_percent"] == pytest.approx(-10, 0.01)
    assert wrong.message.startswith(
        "resolution off: the scanner captures 450 dpi across the platen, not the 500 it "
        "declares (-10.0 %, at most ±1 %)"
    )
    # both axes: the grating turned a quarter for the vertical one
    vertical = np.ascontiguousarray(targets.ridge_target((750, 800), dpi_actual=494).T)
    both = cal.resolution([targets.ridge_target(), vertical], SCANNER)
    assert not both.passed and set(both.measured) >= {"dpi_x", "dpi_y"}
    assert both.measured["dpi_y"] == pytest.approx(494, abs=0.5) and "down the platen" in (
        both.message
    )
    nothing = cal.resolution(targets.blank_platen(), SCANNER)
    assert not nothing.passed and nothing.message.startswith("no 0.5 mm grating found")


@pytest.fixture(scope="module")
def reference_images() -> dict[str, np.ndarray]:
    """The reference finger in three placements, and once worn (the replica's contact
    shrunk): NFIQ 2 47, 47, 42 and 32."""
    images = {f"good{i}": targets.reference_finger(placement=i) for i in range(3)}
    images["worn"] = targets.reference_finger(placement=0, worn=True)
    return images


def test_reference_finger_quality_over_time(reference_images, tmp_path: Path):
    history = DeviceHistory(tmp_path / "history.sqlite3")
    for i in range(3):
        result = cal.reference_finger(
            reference_images[f"good{i}"], SCANNER, history.reference_scores("FP-1")
        )
        assert result.passed, result.message
        history.record_calibration("FP-1", result, technician="tech-042")
    scores = history.reference_scores("FP-1")
    assert len(scores) == 3 and all(s >= 40 for s in scores)
    usual = float(np.median(scores))

    worn = cal.reference_finger(reference_images["worn"], SCANNER, scores)
    assert not worn.passed
    assert worn.measured["drop"] == usual - worn.measured["nfiq2"] > 10
    assert worn.message.startswith(
        f"reference finger quality dropped: NFIQ 2 {worn.measured['nfiq2']:.0f}, below the "
        f"minimum 35 and {worn.measured['drop']:.0f} below its usual {usual:.0f} (at most 10)"
    )
    # the drop alone fails it, however good the score still is
    lenient = SCANNER.model_copy(
        update={"calibration": SCANNER.calibration.model_copy(update={"reference_min_quality": 20})}
    )
    dropped = cal.reference_finger(reference_images["worn"], lenient, scores)
    assert not dropped.passed and "below the minimum" not in dropped.message
    assert "below its usual" in dropped.message and "check the finger for wear" in dropped.message
    # a failed run is kept, but is not the device's usual
    history.record_calibration("FP-1", worn, technician="tech-042")
    assert history.reference_scores("FP-1") == scores
    assert len(history.reference_scores("FP-1", passed_only=False)) == 4
    first = cal.reference_finger(reference_images["worn"], lenient)  # no history yet
    assert first.passed and "drop" not in first.measured


# -------------------------------------------------------------------------- card reader
def test_apdu_round_trip_times():
    fast = cal.apdu_round_trip([3.1, 2.9, 4.2, 3.3, 3.0, 5.5, 3.2, 3.1, 2.8, 3.4], READER_CONFIG)
    assert fast.passed and fast.measured["median_ms"] == pytest.approx(3.15)
    slow = cal.apdu_round_trip([60, 70, 80, 65, 300, 62, 61, 70, 80, 90], READER_CONFIG)
    assert not slow.passed
    assert slow.measured["p95_ms"] == pytest.approx(205.5)
    assert re.match(
        r"slow card reader: median 70 ms, p95 20[56] ms per command \(at most 50 and 150\) — "
        "plug the reader straight into the kiosk",
        slow.message,
    )
    stalls = cal.apdu_round_trip([5] * 18 + [400, 500], READER_CONFIG)  # median fine, p95 not
    assert not stalls.passed and stalls.measured["median_ms"] == 5
    empty = cal.apdu_round_trip([], READER_CONFIG)
    assert not empty.passed and "at least 5 needed" in empty.message


def test_measuring_sends_only_a_select_of_the_emrtd_application(
    monkeypatch: pytest.MonkeyPatch,
):
    """Without pcscd: the measurement's commands and timing (the real stack: below)."""
    sent: list[bytes] = []

    class Session:
        def transmit_plain(self, apdu: bytes) -> tuple[bytes, int]:
            sent.append(apdu)
            return b"", 0x6A82  # a card without the application answers too: it counts

    @contextlib.contextmanager
    def session(reader: str | None = None) -> Iterator[Session]:
        assert reader == "Some Reader 00"
        yield Session()

    monkeypatch.setattr(card, "session", session)
    samples = cal.measure_apdu_round_trip("Some Reader 00", n=7)
    assert len(samples) == 7 and all(s >= 0 for s in samples)
    assert set(sent) == {bytes.fromhex("00A4040C07A0000002471001")} and len(sent) == 8
    with pytest.raises(ValueError):
        cal.measure_apdu_round_trip(None, n=0)


# ------------------------------------------------------------------------------ history
def test_history_records_events_and_calibrations(tmp_path: Path):
    path = tmp_path / "state" / "history.sqlite3"
    history = DeviceHistory(path)
    assert not path.exists()  # created on first use
    history.event("CAM-1", "connected", "camera connected", {"driver": "simulated"})
    result = cal.exposure_white_balance(targets.grey_card(dim=0.5), CAMERA)
    row = history.record_calibration("CAM-1", result, technician="tech-042")
    history.event("FP-1", "error", "capture timed out", {"code": "timeout", "after_s": 30})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

    (rec,) = history.calibrations("CAM-1")
    assert rec.id == row and rec.technician == "tech-042" and not rec.passed
    assert rec.procedure == "exposure_white_balance" and rec.device_model == "simulated-camera"
    assert rec.measured == result.measured and rec.targets == result.targets
    assert rec.message == result.message and rec.at.utcoffset() == dt.timedelta(0)
    assert history.calibrations(procedure="focus") == []
    events = history.events("CAM-1")
    assert [(e.kind, e.what) for e in events] == [
        ("calibration", "exposure_white_balance failed"),
        ("connected", "camera connected"),
    ]
    assert events[1].detail == {"driver": "simulated"}
    assert [e.device_id for e in history.events()] == ["FP-1", "CAM-1", "CAM-1"]
    assert len(history.events(limit=1)) == 1

    # no images or other blobs; only the kinds of events there are
    for bad in ({"image": b"\xff\xd8"}, {"frame": np.zeros(3)}, {"x": "a" * 5000}):
        with pytest.raises(HistoryError):
            history.event("CAM-1", "error", "x", bad)
    with pytest.raises(HistoryError, match="event kind"):
        history.event("CAM-1", "rebooted", "x")
    with pytest.raises(HistoryError):
        history.record_calibration("CAM-1", result, technician=" ")
    history.close()

    with sqlite3.connect(path) as db:  # another reader: WAL, and the schema as documented
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        measured = db.execute("SELECT measured FROM calibrations").fetchone()[0]
        assert json.loads(measured) == result.measured
    assert DeviceHistory(path).calibrations()[0].id == row  # reopened


def test_history_is_thread_safe(tmp_path: Path):
    history = DeviceHistory(tmp_path / "h.sqlite3")
    result = cal.apdu_round_trip([3.0] * 10, READER_CONFIG)

    def work(n: int) -> None:
        for i in range(25):
            history.event(f"DEV-{n}", "connected", f"event {i}")
            history.record_calibration(f"DEV-{n}", result, technician="tech-042")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(history.events(limit=1000)) == 200  # 100 events + 100 calibration events
    assert len(history.calibrations(limit=1000)) == 100
    assert len(history.calibrations("DEV-2", "apdu_round_trip", limit=1000)) == 25


# ------------------------------------------------------------------------------- pcscd
READER = "Virtual PCD 00 00"  # vpcd's first slot (as tests/test_card.py)
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)


@pytest.fixture
def inserted(pcscd, faces_dir: Path) -> Iterator[object]:
    from devices.simulation import emrtd

    photo = cv2.imread(str(faces_dir / "obama__obama.jpg"))
    assert photo is not None
    img = cv2.resize(photo, (360, 480))
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    document = emrtd.issue_document(TD1, jpg.tobytes(), (360, 480), emrtd.DocumentPKI.create())
    chip = emrtd.EmulatedChip(document)
    vc = emrtd.VirtualCard(chip)
    vc.insert()
    card.wait_for_card(READER, timeout=10)
    yield chip
    vc.remove()
    assert card.wait_for_removal(READER, timeout=10)


@pytest.mark.pcsc
def test_apdu_round_trip_through_pcscd(inserted):
    samples = cal.measure_apdu_round_trip(READER, n=20)
    assert len(samples) == 20 and all(0 < s < 1000 for s in samples)
    assert inserted.commands.count(b"\xa4") == 21  # one untimed, then the 20 timed
    result = cal.apdu_round_trip(samples, READER_CONFIG)
    assert result.passed, result.message  # a local virtual reader answers in milliseconds
