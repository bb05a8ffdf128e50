"""The MOSIP SBI driver (:mod:`devices.sbi`) against the simulated SBI device
(:mod:`devices.simulation.sbi_device`) in its own process, over real HTTP: discovery, signed
device info, slap capture with segmentation (each finger matching its own print), thumbs, a
single finger, missing fingers, face capture and preview, busy, unplugged, timeouts,
untrusted and tampered signatures, malformed answers; and ``segment_slap`` on composed slaps.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import serve_daemon

from biometrics import face, synthetic
from biometrics import fingerprint as fp
from devices import sbi
from devices.bus import DeviceClient
from devices.camera import CameraError
from devices.daemon import DaemonConfig
from devices.exceptions import DeviceError
from devices.fingerprint import FingerprintReaderError
from devices.simulation import sbi_device
from devices.simulation.fingerprint import SimulatedFingerprintReader
from devices.simulation.sbi_device import compose_slap, make_device_pki, master_print, sign_jws

PERSON = 11
RIGHT, THUMBS = (2, 3, 4, 5), (1, 6)
# the shared test photos (tests/helpers.py's FACES)
FACES = Path(
    os.environ.get("RNP_FACES_DIR", Path(__file__).resolve().parents[2] / "shared/data/faces")
)
PHOTO = FACES / "biden__biden.jpg"


@dataclass(frozen=True)
class PKI:
    key: Path
    cert: Path
    ca: Path
    trust: Path  # a kiosk trust folder: sbi-ca/ holds the device provider's CA
    wrong: Path  # the same, holding another provider's CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("sbi-pki")
    ca, key, cert = make_device_pki(root / "device")
    other_ca, _, _ = make_device_pki(root / "other")
    trust, wrong = root / "trust", root / "wrong"
    for folder, cert_file in ((trust, ca), (wrong, other_ca)):
        (folder / "sbi-ca").mkdir(parents=True)
        shutil.copy(cert_file, folder / "sbi-ca" / "provider.pem")
        (folder / "csca.ml").write_bytes(b"not a device CA")  # ignored: not in sbi-ca/
    return PKI(key, cert, ca, trust, wrong)


def _canvas(image: np.ndarray, shape: tuple[int, int] = (384, 320)) -> np.ndarray:
    """``image`` centred on a fixed-size background (one network input size to compile)."""
    out = np.full(shape, int(np.median(image[:8])), np.uint8)
    h, w = min(image.shape[0], shape[0]), min(image.shape[1], shape[1])
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    oy, ox = (shape[0] - h) // 2, (shape[1] - w) // 2
    out[oy : oy + h, ox : ox + w] = image[y : y + h, x : x + w]
    return out


def _seed(position: int) -> int:
    return SimulatedFingerprintReader(PERSON).finger_seed(position)


Masters = dict[int, synthetic.MasterFingerprint]
Templates = dict[int, fp.FingerprintTemplate]


@dataclass(frozen=True)
class Background:
    cache: Path  # master prints on disk, shared with the device process
    masters: Future[Masters]  # the right hand's master prints
    references: Future[Templates]  # templates of the impressions the device places first


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """Made in a thread while the device process starts and the other tests run: the right
    hand's master prints (a second each; the device reads them from the shared cache rather
    than make them again), then the templates of their first impressions (the neural
    network's load and a few seconds per print)."""
    cache = tmp_path_factory.mktemp("sbi-masters")
    pool = ThreadPoolExecutor(1)
    masters = pool.submit(lambda: {p: master_print(_seed(p), cache) for p in RIGHT})

    def references() -> Templates:
        made = masters.result()
        first = {p: synthetic.fingerprint_impression(made[p], 0, difficulty=1.0) for p in RIGHT}
        return {p: fp.extract(_canvas(first[p]), 500) for p in RIGHT}

    yield Background(cache, masters, pool.submit(references))
    pool.shutdown(wait=False, cancel_futures=True)


def _free_port() -> int:
    for port in random.sample(list(sbi.SBI_PORTS), len(sbi.SBI_PORTS)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 4501-4600")


def _simulate(port: int, **settings: object) -> None:
    r = httpx.post(f"http://127.0.0.1:{port}/simulate", json=settings, timeout=60)
    assert r.status_code == 200, r.text


def _ours(proc: subprocess.Popen[bytes], port: int, ca: Path) -> bool:
    """Whether ``proc`` came up answering on ``port``: its info verifies against our CA (not
    another session's device that took the port first)."""
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(sbi.SBIError), sbi.SBIClient(port, trust=[ca]) as client:
            client.info()
            return proc.poll() is None
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def device(pki: PKI, background: Background) -> Iterator[int]:
    """The simulated device's port: its own process, answering."""
    for _ in range(3):
        port = _free_port()
        command = [sys.executable, "-m", "devices.simulation.sbi_device", "--port", str(port)]
        command += ["--key", str(pki.key), "--cert", str(pki.cert), "--photo", str(PHOTO)]
        command += ["--cache", str(background.cache)]
        proc = subprocess.Popen(command)
        if _ours(proc, port, pki.ca):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail("the simulated SBI device did not start")
    try:
        _simulate(port, person=PERSON, warm=[*THUMBS, *RIGHT])  # ours first: RIGHT is made here
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def port(device: int) -> int:
    """The device, reset: person PERSON at visit 0 (their first captures), nothing wrong."""
    _simulate(
        device,
        person=PERSON,
        visit=0,
        missing=[],
        busy=False,
        plug=True,
        unplug_after_ms=None,
        delay_ms=0,
        tamper=False,
        malformed=None,
    )
    return device


@pytest.fixture
def reader(port: int, pki: PKI) -> Iterator[sbi.SBIFingerprintReader]:
    r = sbi.SBIFingerprintReader(port, trust_dir=pki.trust)
    yield r
    r.close()


# ------------------------------------------------------------------------ discovery, info
def test_discovery_lists_both_devices_unverified(port: int) -> None:
    with sbi.SBIClient(port) as client:
        devices = {d.digital_id.type: d for d in client.discover()}
        assert set(devices) == {"Finger", "Face"}
        finger = devices["Finger"]
        assert (finger.status, finger.purpose, finger.sub_ids) == (
            "Ready",
            "Registration",
            (1, 2, 3),
        )
        assert finger.digital_id.device_sub_type == "Slap" and not finger.verified
        assert finger.callback_id == f"http://127.0.0.1:{port}/"
        assert finger.device_code == finger.digital_id.serial_no
        assert [d.digital_id.type for d in client.discover("Face")] == ["Face"]
        assert client.discover("Iris") == []


def test_scan_finds_the_service_quickly(port: int) -> None:
    start = time.monotonic()
    found = sbi.scan_ports()
    assert time.monotonic() - start < 10
    assert {("Finger", port), ("Face", port)} <= {(d.digital_id.type, d.port) for d in found}


def test_info_is_signed_and_verified(port: int, pki: PKI) -> None:
    with sbi.SBIClient(port, trust=[pki.ca]) as client:
        devices = client.info()
    assert all(d.verified for d in devices)
    finger = next(d for d in devices if d.digital_id.type == "Finger")
    assert (finger.firmware, finger.env, finger.certification) == ("sim-1.0", "Developer", "L1")
    info = sbi.discover_all(range(port, port + 1), trust_dir=pki.trust)
    assert {(i.kind, i.driver, i.firmware) for i in info} == {
        ("fingerprint", f"sbi:{port}", "sim-1.0"),
        ("camera", f"sbi:{port}", "sim-1.0"),
    }
    untrusted = sbi.discover_all(range(port, port + 1), trust_dir=pki.wrong)
    assert {i.firmware for i in untrusted} == {"unverified"}


@pytest.mark.parametrize("trust", ["wrong", "none"])
def test_a_device_signed_by_an_unknown_ca_is_refused(port: int, pki: PKI, trust: str) -> None:
    folder = pki.wrong if trust == "wrong" else None
    with pytest.raises(FingerprintReaderError) as err:
        sbi.SBIFingerprintReader(port, trust_dir=folder)
    assert err.value.code == "untrusted_device"
    with pytest.raises(CameraError) as cam_err:
        sbi.SBICamera(port, trust_dir=folder)
    assert cam_err.value.code == "untrusted_device"
    with sbi.SBIClient(port, trust=pki.wrong) as client, pytest.raises(sbi.SBIError) as e:
        client.info()
    assert e.value.code == "untrusted_device"


# ---------------------------------------------------------------------------------- fingers
def test_thumbs_and_a_single_finger(reader: sbi.SBIFingerprintReader) -> None:
    thumbs = reader.capture_slap(THUMBS)
    assert sorted(thumbs) == [1, 6]
    assert all(min(t.shape) >= 200 and t.std() > 20 for t in thumbs.values())
    middle = reader.capture(3)
    assert middle.ndim == 2 and middle.std() > 20
    assert reader.info().model == "SIM-SLAP-442" and reader.info().driver.startswith("sbi:")
    with pytest.raises(ValueError):
        reader.capture_slap((2, 7))  # two slaps


def test_missing_fingers_are_exceptions(port: int, reader: sbi.SBIFingerprintReader) -> None:
    _simulate(port, missing=[4])
    images = reader.capture_slap((2, 3, 5))  # the ring finger declared missing
    assert sorted(images) == [2, 3, 5]
    with pytest.raises(FingerprintReaderError) as err:
        reader.capture_slap(RIGHT)  # asked for, but not on the platen
    assert err.value.code == "no_finger"


# ------------------------------------------------------------------------------------ face
def test_face_capture_and_preview(port: int, pki: PKI) -> None:
    with sbi.SBICamera(port, trust_dir=pki.trust, timeout=20) as camera:
        image = camera.capture()
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8
        assert len(face.detect(image)) == 1
        frames = [camera.read() for _ in range(3)]
        assert [f.index for f in frames if f] == [0, 1, 2]
        assert all(f is not None and f.image.shape == (480, 640, 3) for f in frames)
        assert frames[2] is not None and frames[2].timestamp >= frames[0].timestamp  # type: ignore[union-attr]
        assert camera.info().kind == "camera"


def test_nobody_before_the_face_camera(port: int, pki: PKI) -> None:
    _simulate(port, photo=None)
    try:
        with sbi.SBICamera(port, trust_dir=pki.trust) as camera, pytest.raises(CameraError) as e:
            camera.capture()
        assert e.value.code == "no_face"
    finally:
        _simulate(port, photo=str(PHOTO))


# --------------------------------------------------------------------------- what goes wrong
def test_busy_device(port: int, reader: sbi.SBIFingerprintReader) -> None:
    _simulate(port, busy=True)
    with sbi.SBIClient(port) as client:
        assert {d.status for d in client.discover()} == {"Busy"}
    with pytest.raises(FingerprintReaderError) as err:
        reader.capture(2)
    assert err.value.code == "busy"
    _simulate(port, busy=False)
    assert reader.capture(2).ndim == 2


def test_a_second_capture_while_one_runs_is_busy(
    port: int, pki: PKI, reader: sbi.SBIFingerprintReader
) -> None:
    _simulate(port, delay_ms=1000)
    first: list[object] = []
    worker = threading.Thread(target=lambda: first.append(reader.capture(2)))
    worker.start()
    time.sleep(0.3)
    other_reader = sbi.SBIFingerprintReader(port, trust_dir=pki.trust)
    try:
        with pytest.raises(FingerprintReaderError) as err:
            other_reader.capture(3)
        assert err.value.code == "busy"
    finally:
        other_reader.close()
        worker.join()
    assert len(first) == 1


def test_unplugged_mid_capture_then_plugged_again(
    port: int, reader: sbi.SBIFingerprintReader
) -> None:
    _simulate(port, unplug_after_ms=300)
    start = time.monotonic()
    with pytest.raises(FingerprintReaderError) as err:
        reader.capture_slap(RIGHT)
    assert err.value.code == "device_lost"
    assert 0.25 < time.monotonic() - start < 5
    with pytest.raises(FingerprintReaderError) as again:
        reader.capture(2)  # still unplugged: every connection dropped
    assert again.value.code == "device_lost"
    with sbi.SBIClient(port) as client, pytest.raises(sbi.SBIError) as disc:
        client.discover()
    assert disc.value.code == "device_lost"
    _simulate(port, plug=True)
    assert sorted(reader.capture_slap(RIGHT)) == list(RIGHT)


def test_nothing_listening_is_device_lost(pki: PKI) -> None:
    with sbi.SBIClient(_free_port(), trust=pki.trust) as client, pytest.raises(sbi.SBIError) as e:
        client.discover()
    assert e.value.code == "device_lost"


def test_timeouts(port: int, pki: PKI) -> None:
    # the device's own capture timeout (701), then no answer at all in time
    _simulate(port, delay_ms=1200)
    r = sbi.SBIFingerprintReader(port, trust_dir=pki.trust, timeout=1.0)
    try:
        with pytest.raises(FingerprintReaderError) as err:
            r.capture(2)
        assert err.value.code == "timeout"
        _simulate(port, delay_ms=2600)
        quick = sbi.SBIFingerprintReader(port, trust_dir=pki.trust, timeout=0.2)
        start = time.monotonic()
        with pytest.raises(FingerprintReaderError) as slow:
            quick.capture(2)
        assert slow.value.code == "timeout" and time.monotonic() - start < 2.5
        quick.close()
    finally:
        r.close()
        time.sleep(0.6)  # let the stalled capture end before the next test


def test_tampered_capture_is_untrusted(port: int, reader: sbi.SBIFingerprintReader) -> None:
    _simulate(port, tamper=True)
    with pytest.raises(FingerprintReaderError) as err:
        reader.capture(2)
    assert err.value.code == "untrusted_device"
    assert reader.capture(2).ndim == 2  # the next one is fine


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("not_json", "device_error"),
        ("truncated_body", "device_lost"),
        ("truncated_bio", "device_error"),
        ("bad_hash", "untrusted_device"),
        ("wrong_transaction", "untrusted_device"),
    ],
)
def test_malformed_answers_are_clear_errors(
    port: int, reader: sbi.SBIFingerprintReader, kind: str, code: str
) -> None:
    _simulate(port, malformed=kind)
    with pytest.raises(FingerprintReaderError) as err:
        reader.capture(2)
    assert err.value.code == code, str(err.value)


def test_protocol_details(port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
        pre = http.options("/capture")
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "RCAPTURE" in pre.headers["access-control-allow-methods"]
        auth = http.request("CAPTURE", "/capture", json={"bio": []}).json()
        assert auth["biometrics"][0]["error"]["errorCode"] == "809"  # not an auth device
        bad = http.request("RCAPTURE", "/capture", json={"bio": [{}], "env": "Nowhere"}).json()
        assert bad["biometrics"][0]["error"]["errorCode"] == "115"
    with sbi.SBIClient(port, env="Developer") as client, pytest.raises(sbi.SBIError) as e:
        client.rcapture("9", "Finger", 2, ["Right IndexFinger"])  # no such device
    assert e.value.code == "device_lost"


# ------------------------------------------------------------------- signatures and records
def test_jws_es256_and_expired_certificates(tmp_path: Path) -> None:
    for algorithm, days, ok in (("ES256", 30, True), ("RS256", -1, False)):
        folder = tmp_path / f"{algorithm}{days}"
        ca, key_path, cert_path = make_device_pki(folder, algorithm=algorithm, valid_days=days)  # type: ignore[arg-type]
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        token = sign_jws(b'{"a": 1}', key, cert)  # type: ignore[arg-type]
        trust = sbi._TrustStore.load([ca])
        if ok:
            assert sbi._verify_jws(token, trust, "test") == {"a": 1}
        else:
            with pytest.raises(sbi.SBIError) as e:
                sbi._verify_jws(token, trust, "test")
            assert e.value.code == "untrusted_device"
    with pytest.raises(sbi.SBIError):  # "none" is never accepted
        sbi._verify_jws("eyJhbGciOiJub25lIn0.eyJhIjogMX0.", trust, "test")


def _capture(bio_type: str, sub: str, record: bytes) -> sbi.Capture:
    did = sbi.DigitalId("S", "M", "m", bio_type, "Slap", "P", "P1", "")
    return sbi.Capture(bio_type, sub, record, 50.0, 40.0, "", "", did)


def test_iso_records_2005_and_2011() -> None:
    from central_api.abis import formats

    rng = np.random.default_rng(1)
    pixels = (rng.random((300, 260)) * 200 + 30).astype(np.uint8)
    image = fp.FingerImage(pixels, 2, 500)  # no quality block
    for record in (image.to_iso19794_4("PNG"), formats.finger_record(image, "PNG")):
        assert np.array_equal(_capture("Finger", "Right IndexFinger", record).image(), pixels)
    # bio-utils' 2011 layout: the image data behind its 4-byte length
    plain = formats.finger_record(image, "PNG")
    at = 16 + 4 + 9 + 5 + 1 + 18  # general header, representation header up to the image
    lengths = struct.pack(">I", len(plain) - at)
    framed = bytearray(plain[:at] + lengths + plain[at:])
    struct.pack_into(">I", framed, 8, len(framed))
    struct.pack_into(">I", framed, 16, len(framed) - 16)
    assert np.array_equal(_capture("Finger", "Right IndexFinger", bytes(framed)).image(), pixels)
    with pytest.raises(sbi.SBIError) as e:  # the record names another finger
        _capture("Finger", "Left Thumb", image.to_iso19794_4("PNG")).image()
    assert e.value.code == "untrusted_device"
    with pytest.raises(sbi.SBIError):
        _capture("Finger", "Right IndexFinger", image.to_iso19794_4("PNG")[:-40]).image()
    rgb = cv2.imread(str(PHOTO))
    assert rgb is not None
    _, png = cv2.imencode(".png", rgb)
    h, w = rgb.shape[:2]
    decoded = _capture("Face", "", formats.face_record(png.tobytes(), w, h, "PNG")).image()
    assert np.array_equal(decoded, cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB))


# ------------------------------------------------------------------------ slap segmentation
def _best_match(segment: np.ndarray, reference: np.ndarray) -> float:
    """Normalised cross-correlation of the reference's centre in the segment, over small
    rotations (what segmentation could not quite straighten)."""
    centre, best = reference[100:300, 80:240], -1.0
    for angle in range(-12, 13, 3):
        turn = cv2.getRotationMatrix2D((80, 100), angle, 1)
        patch = cv2.warpAffine(centre, turn, (160, 200), borderValue=(235,))[30:170, 25:135]
        if segment.shape[0] >= patch.shape[0] and segment.shape[1] >= patch.shape[1]:
            best = max(best, float(cv2.matchTemplate(segment, patch, cv2.TM_CCOEFF_NORMED).max()))
    return best


@pytest.mark.parametrize("count", [4, 2])
def test_segment_slap_finds_each_finger_in_order(background: Background, count: int) -> None:
    made = background.masters.result()
    prints = [synthetic.fingerprint_impression(made[p], 3) for p in RIGHT[:count]]
    slap = compose_slap(prints, seed=count)
    assert slap.shape == (1500, 1600)
    segments = sbi.segment_slap(slap, count)
    assert len(segments) == count
    for i, segment in enumerate(segments):
        scores = [_best_match(segment, p) for p in prints]
        others = [v for j, v in enumerate(scores) if j != i]
        assert scores[i] > 0.5 and scores[i] > max(others) + 0.2, scores
        assert segment.shape[0] <= round(2.7 * 500 / 2.54)  # a fingertip: at most ~2.5 cm


def test_segment_slap_splits_touching_fingers(background: Background) -> None:
    made = background.masters.result()
    a, b = (synthetic.fingerprint_impression(made[p], 0, difficulty=0.0) for p in (2, 3))
    slap = np.full((1000, 1200), 236, np.uint8)
    slap[300:700, 300:620] = np.minimum(slap[300:700, 300:620], a)
    slap[310:710, 560:880] = np.minimum(slap[310:710, 560:880], b)  # 60 px overlap
    left, right = sbi.segment_slap(slap, 2)
    assert _best_match(left, a) > _best_match(left, b)
    assert _best_match(right, b) > _best_match(right, a)


def test_segment_slap_refuses_what_is_not_there() -> None:
    blank = np.clip(np.random.default_rng(0).normal(236, 3, (1500, 1600)), 0, 255)
    with pytest.raises(FingerprintReaderError) as err:
        sbi.segment_slap(blank.astype(np.uint8), 4)
    assert err.value.code == "no_finger"
    with pytest.raises(ValueError):
        sbi.segment_slap(np.zeros((10, 10, 3), np.uint8), 4)


# ------------------------------------------------- last: its references are made meanwhile
def test_right_slap_is_segmented_each_finger_matching_its_own_print(
    reader: sbi.SBIFingerprintReader, background: Background
) -> None:
    images = reader.capture_slap(RIGHT)  # the person's first capture: impressions 0
    assert sorted(images) == list(RIGHT)
    for image in images.values():
        assert image.dtype == np.uint8 and 250 <= image.shape[0] <= 520
        assert image.shape[1] <= 420  # one finger, not a slap
    got = {p: fp.extract(_canvas(images[p]), 500) for p in RIGHT}
    want = background.references.result()
    scores = {(p, q): fp.compare(got[p], want[q]) for p in RIGHT for q in RIGHT}
    for p in RIGHT:
        genuine = scores[p, p]
        impostors = [scores[p, q] for q in RIGHT if q != p]
        assert genuine > 40, (p, genuine)
        assert genuine > 4 * max(impostors), (p, genuine, impostors)


# ---------------------------------------------------------------------------- the device daemon
def _fingerprint_state(client: DeviceClient, want: str, seconds: float = 15) -> dict[str, object]:
    """The reader's status once it is ``want`` (and, lost, once the daemon has said why)."""
    deadline = time.monotonic() + seconds
    while True:
        status = {d["kind"]: d for d in client.status()["devices"]}  # type: ignore[union-attr,index]
        reader = status["fingerprint"]
        settled = reader["state"] == want and (want == "ok" or reader["last_error"])
        if settled or time.monotonic() > deadline:
            return reader  # type: ignore[no-any-return]
        time.sleep(0.2)


def test_the_device_daemon_finds_an_sbi_reader_plugged_in_and_loses_it(
    tmp_path: Path, background: Background
) -> None:
    """``devices serve --simulate --fingerprint sbi:PORT``: before the device service runs the
    reader is lost (and says why); started, the daemon finds it within a probe (its signed
    identity, the generic SBI configuration) and the simulated citizen stands at it; a slap
    comes back segmented through the bus; stopped, it is lost again and a capture says so.
    The history keeps each change."""
    trust = tmp_path / "trust"
    (trust / "sbi-ca").mkdir(parents=True)
    port = _free_port()
    config = DaemonConfig(
        socket_dir=tmp_path / "sockets",
        simulated=True,
        fingerprint=f"sbi:{port}",
        trust_dir=trust,
        state_dir=tmp_path / "state",
    )
    with serve_daemon(config) as (_, client):
        before = _fingerprint_state(client, "lost", 5)
        assert before["state"] == "lost" and before["last_error"]
        with client.subscribe("device.") as events:
            with sbi_device.running(tmp_path / "pki", trust, port, cache=background.cache):
                reader = _fingerprint_state(client, "ok")
                assert reader["state"] == "ok" and reader["driver"] == f"sbi:{port}"
                assert reader["serial"] and str(reader["config"]).startswith("sbi-slap-reader")
                got = events.next(10)
                assert got is not None and got[0] == "device.connected"
                person = {"photo": str(PHOTO), "finger_person": PERSON}
                client.call("simulate.citizen", person, timeout=60)
                background.masters.result()  # (the device reads them from the shared cache)
                slap = client.capture_slap("right", timeout=120)
                assert sorted(slap) == list(RIGHT)
                assert all(f.dpi == 500 and f.model == "sbi-slap-reader" for f in slap.values())
                index = fp.extract(_canvas(slap[2].image), 500)
                own = fp.compare(background.references.result()[2], index)
                other = fp.compare(background.references.result()[3], index)
                assert own > 40 > other
            lost = _fingerprint_state(client, "lost")
            assert lost["state"] == "lost"
        with pytest.raises(DeviceError) as err:
            client.capture_finger(2, timeout=60)
        assert err.value.code == "device_lost"
        kinds = [e["kind"] for e in client.call("history").result["events"]]
        assert kinds[:2] == ["lost", "connected"]
