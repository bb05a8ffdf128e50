"""libfprint readers (:mod:`devices.libfprint`) against libfprint's own test driver,
``virtual_image``: a device that appears when ``FP_VIRTUAL_IMAGE`` names a Unix socket, whose
"finger" is an image written to that socket (``struct ii`` width, height, then the grey
pixels; negative widths are commands: -1 retry, -2 error, -3/-4 finger reports, -5 unplug).

Real FVC2004 prints go through it and must come back pixel for pixel. Needs PyGObject and
libfprint's typelib (``scripts/install-libfprint.sh``); skipped, with the reason, without.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
from helpers import FVC2004

from devices import libfprint
from devices.fingerprint import FingerprintReaderError
from devices.libfprint import LibfprintReader

VIRTUAL = "virtual_image"


def _print(name: str) -> np.ndarray:
    image = cv2.imread(str(FVC2004 / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
    if image is None:
        pytest.fail(f"FVC2004 print {name} not found under {FVC2004} (set RNP_FVC_DIR)")
    return np.asarray(image, dtype=np.uint8)


@pytest.fixture(scope="module")
def fprint() -> Any:
    """libfprint's introspected module, or a skip that says what to install."""
    gi = pytest.importorskip(
        "gi", reason="PyGObject (gi) is not installed: run scripts/install-libfprint.sh"
    )
    try:
        gi.require_version("FPrint", "2.0")
        from gi.repository import FPrint
    except (ImportError, ValueError) as exc:
        pytest.skip(
            f"libfprint is not installed (apt-get install libfprint-2-2 gir1.2-fprint-2.0): {exc}"
        )
    return FPrint


class VirtualFinger:
    """The test's end of a ``virtual_image`` device's socket. Each ``send`` connects anew
    (the device drops the previous connection) and writes from a thread: the device reads
    only while a capture runs, and an image is larger than a socket's buffer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._senders: list[threading.Thread] = []

    def send(self, payload: bytes) -> None:
        def write() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(10)
                conn.connect(self.path)
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):  # until the device has read it all
                    while conn.recv(64):
                        pass

        sender = threading.Thread(target=write, daemon=True)
        sender.start()
        self._senders.append(sender)

    def image(self, pixels: np.ndarray) -> None:
        height, width = pixels.shape
        self.send(struct.pack("ii", width, height) + np.ascontiguousarray(pixels).tobytes())

    def command(self, *pairs: tuple[int, int]) -> None:
        """Commands, in order on one connection: (-1, retry), (-2, error), (-3, automatic
        finger reports on/off), (-4, finger on/off), (-5, 0) unplug."""
        self.send(b"".join(struct.pack("ii", kind, value) for kind, value in pairs))

    def join(self) -> None:
        for sender in self._senders:
            sender.join(timeout=5)


@pytest.fixture
def virtual(fprint: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[VirtualFinger]:
    """A ``virtual_image`` device on a fresh socket (a short path: AF_UNIX allows 108)."""
    folder = tempfile.mkdtemp(prefix="fp-")
    path = str(Path(folder) / "finger.sock")
    monkeypatch.setenv("FP_VIRTUAL_IMAGE", path)
    monkeypatch.delenv("FP_VIRTUAL_DEVICE", raising=False)
    monkeypatch.delenv("FP_DRIVERS_ALLOWLIST", raising=False)
    if not any(d.driver == VIRTUAL for d in libfprint.list_devices()):
        pytest.skip("this libfprint is built without its virtual_image test driver")
    finger = VirtualFinger(path)
    yield finger
    finger.join()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def reader(virtual: VirtualFinger) -> Iterator[LibfprintReader]:
    with LibfprintReader(f"libfprint:{VIRTUAL}", timeout=1.0) as opened:
        yield opened


# ---------------------------------------------------------------------------- discovery
def test_list_devices_shows_the_virtual_reader(virtual: VirtualFinger) -> None:
    found = {d.driver: d for d in libfprint.list_devices()}
    device = found[VIRTUAL]
    assert device.gives_images and "capture" in device.features
    assert device.name and device.device_id
    assert device.scan_type in ("press", "swipe")


def test_info_names_driver_model_and_id(reader: LibfprintReader) -> None:
    info = reader.info()
    assert (info.kind, info.driver) == ("fingerprint", "libfprint:virtual_image")
    assert info.model == reader.device.name and info.serial == reader.device.device_id


def test_first_reader_is_opened_without_a_driver_name(virtual: VirtualFinger) -> None:
    with LibfprintReader(None, timeout=1.0) as first:
        assert first.device.driver == VIRTUAL


# ---------------------------------------------------------------------------- capture
@pytest.mark.parametrize("name", ["DB1_B/101_1", "DB2_B/102_3", "DB4_B/103_2"])
def test_capture_returns_the_print_sent(
    reader: LibfprintReader, virtual: VirtualFinger, name: str
) -> None:
    sent = _print(name)
    virtual.image(sent)
    got = reader.capture(2)
    assert got.dtype == np.uint8 and got.shape == sent.shape
    assert np.array_equal(got, sent)  # 500 dpi in, 500 dpi out: not a pixel changed


def test_a_sensor_of_another_resolution_is_resampled(virtual: VirtualFinger) -> None:
    sent = _print("DB3_B/101_1")  # the Atmel FingerChip: 512 dpi
    with LibfprintReader(VIRTUAL, timeout=2.0, sensor_dpi=512) as at_512:
        virtual.image(sent)
        got = at_512.capture(7)
    height, width = sent.shape
    assert got.shape == (round(height * 500 / 512), round(width * 500 / 512))
    expected = cv2.resize(sent, got.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.array_equal(got, expected)


def test_reported_resolution_wins_over_the_default() -> None:
    class Image:  # an FPrint.Image as libfprint fills it for a 1000 ppi sensor
        def __init__(self, pixels: np.ndarray) -> None:
            self.pixels = pixels

        def get_width(self) -> int:
            return int(self.pixels.shape[1])

        def get_height(self) -> int:
            return int(self.pixels.shape[0])

        def get_data(self) -> bytes:
            return self.pixels.tobytes()

        def get_ppmm(self) -> float:
            return 1000 / 25.4

    pixels = np.zeros((400, 300), np.uint8)
    assert libfprint.image_pixels(Image(pixels), dpi=500).shape == (200, 150)
    assert libfprint.image_pixels(Image(pixels), dpi=1000).shape == (400, 300)


def test_no_finger_times_out_and_the_reader_stays_usable(
    reader: LibfprintReader, virtual: VirtualFinger
) -> None:
    virtual.command((-3, 0), (-4, 0))  # no automatic finger reports; "no finger on it"
    started = time.monotonic()
    with pytest.raises(FingerprintReaderError) as caught:
        reader.capture(1)
    assert caught.value.code == "timeout"
    assert 0.9 <= time.monotonic() - started < 3
    sent = _print("DB1_B/104_1")
    virtual.image(sent)
    assert np.array_equal(reader.capture(1), sent)


def test_retry_and_unreadable_finger_ask_for_the_finger_again(
    reader: LibfprintReader, virtual: VirtualFinger, fprint: Any
) -> None:
    virtual.command((-1, int(fprint.DeviceRetry.CENTER_FINGER)))
    with pytest.raises(FingerprintReaderError, match="middle") as caught:
        reader.capture(2)
    assert caught.value.code == "no_finger"
    virtual.image(np.full((300, 300), 255, np.uint8))  # a blank image: no minutiae
    with pytest.raises(FingerprintReaderError) as caught:
        reader.capture(2)
    assert caught.value.code == "no_finger"


def test_device_errors_and_unplugging_are_device_lost(
    reader: LibfprintReader, virtual: VirtualFinger, fprint: Any
) -> None:
    virtual.command((-2, int(fprint.DeviceError.PROTO)))
    with pytest.raises(FingerprintReaderError) as caught:
        reader.capture(2)
    assert caught.value.code == "device_lost"
    virtual.command((-5, 0))  # the device disappears
    with pytest.raises(FingerprintReaderError) as caught:
        reader.capture(2)
    assert caught.value.code == "device_lost"
    with pytest.raises(FingerprintReaderError, match="unplugged"):
        reader.capture(2)
    reader.close()  # an unplugged reader closes quietly


def test_a_second_capture_at_once_is_busy_and_close_cancels(reader: LibfprintReader) -> None:
    errors: list[FingerprintReaderError] = []

    def wait_for_finger() -> None:
        try:
            reader.capture(3)
        except FingerprintReaderError as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait_for_finger)
    waiting.start()
    time.sleep(0.2)
    with pytest.raises(FingerprintReaderError) as caught:
        reader.capture(4)
    assert caught.value.code == "busy"
    started = time.monotonic()
    reader.close()  # cancels the capture under way
    waiting.join(timeout=5)
    assert time.monotonic() - started < 0.9  # before the capture's own 1 s timeout
    assert [e.code for e in errors] == ["device_lost"]
    with pytest.raises(FingerprintReaderError, match="closed"):
        reader.capture(3)
    reader.close()  # idempotent


def test_bad_position_is_refused(reader: LibfprintReader) -> None:
    with pytest.raises(ValueError):
        reader.capture(11)


# ---------------------------------------------------------------------------- refusals
def test_match_on_chip_reader_is_refused(fprint: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """libfprint's ``virtual_device`` keeps its prints inside and gives no images."""
    folder = tempfile.mkdtemp(prefix="fp-")
    try:
        monkeypatch.delenv("FP_VIRTUAL_IMAGE", raising=False)
        monkeypatch.setenv("FP_VIRTUAL_DEVICE", str(Path(folder) / "device.sock"))
        listed = {d.driver: d for d in libfprint.list_devices()}
        if "virtual_device" not in listed:
            pytest.skip("this libfprint is built without its virtual_device test driver")
        assert not listed["virtual_device"].gives_images
        for spec in ("virtual_device", None):
            with pytest.raises(FingerprintReaderError, match="gives no images") as caught:
                LibfprintReader(spec, timeout=1.0)
            assert caught.value.code == "device_lost"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_unknown_driver_is_device_lost(virtual: VirtualFinger) -> None:
    with pytest.raises(FingerprintReaderError, match="no libfprint") as caught:
        LibfprintReader("no_such_driver", timeout=1.0)
    assert caught.value.code == "device_lost"
    assert VIRTUAL in str(caught.value)  # says what it found instead


def test_without_gi_the_module_imports_and_says_libfprint_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs where gi is absent too: a kiosk without libfprint."""
    monkeypatch.setitem(sys.modules, "gi", None)  # `import gi` raises ImportError
    for use in (libfprint.list_devices, lambda: LibfprintReader("virtual_image")):
        with pytest.raises(FingerprintReaderError, match="libfprint is not installed") as caught:
            use()
        assert caught.value.code == "device_lost"


def test_without_the_typelib_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ModuleType("gi")

    def require_version(namespace: str, version: str) -> None:
        raise ValueError(f"Namespace {namespace} not available")

    fake.require_version = require_version  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gi", fake)
    with pytest.raises(FingerprintReaderError, match=r"gir1\.2-fprint-2\.0") as caught:
        libfprint.list_devices()
    assert caught.value.code == "device_lost"


# ---------------------------------------------------------------------------- the device daemon
def test_the_device_daemon_finds_and_drives_a_libfprint_reader(
    virtual: VirtualFinger, tmp_path: Path
) -> None:
    """``devices serve --fingerprint libfprint:virtual_image``: the daemon opens the reader
    (its probe), reports it, and captures through it over the bus."""
    from helpers import serve_daemon

    from devices.daemon import DaemonConfig

    config = DaemonConfig(
        socket_dir=tmp_path / "sockets",
        camera=f"opencv:{tmp_path / 'none.avi'}",
        fingerprint=f"libfprint:{VIRTUAL}",
        state_dir=tmp_path / "state",
    )
    print_ = _print("DB1_B/101_1")
    with serve_daemon(config) as (_, client):
        deadline = time.monotonic() + 15
        while True:
            status = {d["kind"]: d for d in client.status()["devices"]}  # type: ignore[union-attr,index]
            if status["fingerprint"]["state"] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        reader = status["fingerprint"]
        assert reader["state"] == "ok" and reader["driver"] == f"libfprint:{VIRTUAL}"
        assert str(reader["config"]).startswith("libfprint-reader")
        virtual.image(print_)
        got = client.capture_finger(2, timeout=30)
        assert got.dpi == 500 and got.model == "libfprint-reader"
        assert np.array_equal(got.image, print_)
