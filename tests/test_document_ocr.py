"""Reading the printed MRZ from the document camera's image (devices.document): rendered card
backs and passport pages read back exactly, a wrong check digit or an image without a readable
MRZ is refused (never a wrong MRZ), the repair of OCR text by field type, and the daemon's
``document.capture`` whose image opens the simulated citizen's chip."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import serve_daemon

from devices.bus import DeviceClient, DeviceError
from devices.daemon import DaemonConfig, DaemonConfigError, DeviceDaemon
from devices.document import MRZUnreadable, read_mrz, render_card_back, repair_mrz_text
from devices.icao.mrz import check_digit, parse, td1

CARD = td1("AB123456", "El Amrani", "Youssef", "880412", "M", "341231")
# a card with optional data in line 1 (it counts in the composite check digit only)
CARD_OPTIONAL = (
    "IDMARZ9876543<90123456789<<<<<\n9502286F2906302MAR<<<<<<<<<<<1\nBENNANI<<FATIMA<ZAHRA<<<<<<<<<"
)


def td3(number: str, surname: str, given: str, birth: str, sex: str, expiry: str) -> str:
    """A passport MRZ (TD3, 2 x 44) with every check digit."""

    def field(text: str, n: int) -> str:
        return (text.upper().replace(" ", "<") + "<" * n)[:n]

    l1 = "P<MAR" + field(field(surname, 39).rstrip("<") + "<<" + field(given, 39), 39)
    num = field(number, 9)
    l2 = f"{num}{check_digit(num)}MAR{birth}{check_digit(birth)}{sex}"
    l2 += f"{expiry}{check_digit(expiry)}" + "<" * 15
    l2 += check_digit(l2[0:10] + l2[13:20] + l2[21:43])
    return f"{l1}\n{l2}"


PASSPORT = td3("BK4827163", "Ouazzani", "Hamza", "010203", "M", "320715")


def lines(text: str) -> tuple[str, ...]:
    return tuple(text.splitlines())


def test_the_test_documents_are_valid():
    for text in (CARD, CARD_OPTIONAL, PASSPORT):
        assert parse(text).lines == lines(text)


# ---------------------------------------------------------------------------- OCR of images
@pytest.mark.parametrize(
    ("text", "seed", "look"),
    [
        (CARD, 1, {}),
        (CARD, 2, {"angle": 4.0, "blur": 1.0, "noise": 6.0, "scale": 0.8}),
        (CARD, 3, {"angle": -7.0, "blur": 1.5, "noise": 10.0, "scale": 0.6}),
        (CARD_OPTIONAL, 4, {"angle": 2.5, "blur": 0.5, "noise": 4.0}),
        (PASSPORT, 5, {}),
        (PASSPORT, 6, {"angle": -5.0, "blur": 1.0, "noise": 8.0, "scale": 0.6}),
    ],
    ids=["td1-clean", "td1-tilted", "td1-worn", "td1-optional-data", "td3-clean", "td3-tilted"],
)
def test_rendered_mrz_reads_back_exactly(text: str, seed: int, look: dict[str, float]):
    image = render_card_back(text, seed, **look)
    assert image.dtype == np.uint8 and image.ndim == 3
    assert read_mrz(image).lines == lines(text)


def test_grey_images_and_a_cut_out_band_are_read_too():
    image = cv2.cvtColor(render_card_back(CARD, 7, angle=-3.0), cv2.COLOR_BGR2GRAY)
    assert read_mrz(image).lines == lines(CARD)


def test_rendering_is_deterministic_and_the_card_has_id1_proportions():
    a = render_card_back(CARD, 11, angle=3.0, blur=1.0, noise=5.0)
    assert np.array_equal(a, render_card_back(CARD, 11, angle=3.0, blur=1.0, noise=5.0))
    assert not np.array_equal(a, render_card_back(CARD, 12, angle=3.0, blur=1.0, noise=5.0))
    h, w = render_card_back(CARD, 0, scale=0.5).shape[:2]
    assert 0.5 * 1011 < w < 0.5 * 1011 * 1.5 and h < w
    with pytest.raises(ValueError):
        render_card_back("NOT AN MRZ")


def test_a_wrong_check_digit_is_refused_never_returned():
    l1, l2, l3 = CARD.splitlines()
    wrong_birth = l2[:6] + str((int(l2[6]) + 1) % 10) + l2[7:]  # date of birth's digit
    with pytest.raises(MRZUnreadable, match="check digit") as err:
        read_mrz(render_card_back(f"{l1}\n{wrong_birth}\n{l3}", 21))
    assert err.value.code == "mrz_unreadable"
    assert "880412" not in str(err.value)  # the message never quotes the MRZ
    p1, p2 = PASSPORT.splitlines()
    wrong_number = p2[:9] + str((int(p2[9]) + 3) % 10) + p2[10:]
    with pytest.raises(MRZUnreadable, match="check digit"):
        read_mrz(render_card_back(f"{p1}\n{wrong_number}", 22, angle=2.0))


def _glare(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    spot = np.zeros((h, w), np.float32)
    cv2.ellipse(spot, (w // 2, int(0.72 * h)), (int(0.55 * w), int(0.2 * h)), 0, 0, 360, 1, -1)
    spot = cv2.GaussianBlur(spot, (0, 0), 0.03 * w)[:, :, None]
    return (image * (1 - spot) + 250 * spot).astype(np.uint8)


@pytest.mark.parametrize("kind", ["blank", "noise", "glare"])
def test_an_image_without_a_readable_mrz_is_refused(kind: str):
    rng = np.random.default_rng(5)
    image = {
        "blank": lambda: np.full((720, 1280, 3), 235, np.uint8),
        "noise": lambda: rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8),
        "glare": lambda: _glare(render_card_back(CARD, 31)),
    }[kind]()
    with pytest.raises(MRZUnreadable) as err:
        read_mrz(image)
    assert err.value.code == "mrz_unreadable" and str(err.value)


def test_not_an_image_is_a_programming_error():
    with pytest.raises(ValueError):
        read_mrz(np.zeros((100, 100), np.float32))


# ---------------------------------------------------------------------------- repair of text
def test_repair_fixes_letter_digit_swaps_by_field_type():
    l1, l2, l3 = CARD.splitlines()  # IDMARAB123456<4..., 8804123M3412318MAR...8, EL<AMRANI...
    ocr = "\n".join(
        (
            "IDMARAB123456<4<<<<<<<<<<<<<<<",
            # dates and check digits: O->0, I->1, B->8, Z->2, S->5 (digits only there)
            "88O4I23M34IZ3IBMAR<<<<<<<<<<<B",
            # names: 0->O, 1->I, 5->S (letters only there)
            "EL<AMRAN1<<Y0U55EF<<<<<<<<<<<<",
        )
    )
    assert repair_mrz_text(ocr).lines == (l1, l2, l3)


def test_repair_settles_letter_or_digit_in_the_document_number_by_its_check_digits():
    l1, l2, l3 = CARD.splitlines()
    # "A8123456": the 8 could be B; only "AB123456" verifies with check digit 4
    ocr = f"noise above\n IDMARA8123456<4<<<<<<<<<<<<<<< \n{l2}\n{l3}\n"
    assert repair_mrz_text(ocr).lines == (l1, l2, l3)
    # fillers miscounted and read as K at the end of line 1, a filler missing in line 2
    ocr = f"IDMARAB123456<4<<<<<<<<<<KKKK<\n{l2[:20] + l2[21:]}\n{l3}"
    assert repair_mrz_text(ocr).lines == (l1, l2, l3)


def test_repair_of_a_passport():
    p1, p2 = PASSPORT.splitlines()
    ocr = p1.replace("OUAZZANI", "0UAZZAN1") + "\n" + p2.replace("010203", "O1O2O3")
    assert repair_mrz_text(ocr).lines == (p1, p2)


def test_repair_never_accepts_failing_check_digits():
    l1, l2, l3 = CARD.splitlines()
    with pytest.raises(MRZUnreadable, match="check digit of field date of birth"):
        repair_mrz_text(f"{l1}\n{l2.replace('880412', '880413')}\n{l3}")
    with pytest.raises(MRZUnreadable, match="OCR gave 2"):
        repair_mrz_text(f"{l1}\n{l2}")


# ---------------------------------------------------------------------------- the daemon
@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[DeviceDaemon, DeviceClient]]:
    with serve_daemon(DaemonConfig(socket_dir=tmp_path / "sockets", simulated=True)) as served:
        yield served


def test_no_document_under_the_camera_is_a_clear_error(daemon, faces_dir: Path):
    _, client = daemon
    with pytest.raises(DeviceError) as err:
        client.capture_document()
    assert err.value.code == "no_document"
    photo = str(sorted(faces_dir.glob("*.jpg"))[0])
    client.call("simulate.citizen", {"photo": photo}, timeout=30)  # a citizen without a card
    with pytest.raises(DeviceError) as err:
        client.capture_document()
    assert err.value.code == "no_document"


def test_the_document_camera_image_opens_the_chip(daemon, pcscd, faces_dir: Path):
    _, client = daemon
    photo = str(sorted(faces_dir.glob("*.jpg"))[0])
    card = {"mrz": CARD, "full_name": "EL AMRANI YOUSSEF"}
    client.call("simulate.citizen", {"photo": photo, "card": card, "seed": 3}, timeout=30)
    image = client.capture_document()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    mrz = read_mrz(image)
    assert mrz.lines == lines(CARD)
    for _ in range(40):  # pcscd notices the inserted card within a poll period
        try:
            read = client.read_document({"mrz": "\n".join(mrz.lines)})
            break
        except DeviceError as exc:
            if exc.code != "no_card":
                raise
            time.sleep(0.25)
    else:
        raise AssertionError("the card never showed up")
    assert read.fields["document_number"] == "AB123456" and "DG1" in read.files

    tilted = {**card, "document_image": {"angle": -6.0, "blur": 1.0, "noise": 6.0}}
    client.call("simulate.citizen", {"photo": photo, "card": tilted, "seed": 4}, timeout=30)
    assert read_mrz(client.capture_document()).lines == lines(CARD)

    glare = {**card, "document_image": "unreadable"}
    client.call("simulate.citizen", {"photo": photo, "card": glare, "seed": 5}, timeout=30)
    with pytest.raises(MRZUnreadable):
        read_mrz(client.capture_document())

    with pytest.raises(DeviceError) as err:
        client.call("simulate.citizen", {"photo": photo, "card": {**card, "document_image": 7}})
    assert err.value.code == "bad_request"


def test_a_real_daemon_grabs_the_document_from_its_document_camera(tmp_path: Path):
    """Real mode: OpenCV reads the document camera (here a video file of a card back); the
    frame comes back as BGR and its MRZ reads."""
    image = render_card_back(CARD, 41, angle=2.0)
    h, w = (n // 2 * 2 for n in image.shape[:2])  # even sizes: what a video codec keeps
    image = np.ascontiguousarray(image[:h, :w])
    video = tmp_path / "tray.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for _ in range(8):
        writer.write(image)
    writer.release()
    with pytest.raises(DaemonConfigError, match="document_camera"):
        DaemonConfig(socket_dir=tmp_path, document_camera="usb:1")
    sockets = tmp_path / "sockets"
    config = DaemonConfig(
        socket_dir=sockets,
        camera=f"opencv:{tmp_path / 'none.avi'}",
        document_camera=f"opencv:{video}",
    )
    daemon = DeviceDaemon(config)
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    assert daemon.ready.wait(10)
    try:
        client = DeviceClient(sockets)
        frame = client.capture_document()
        assert frame.shape == image.shape and frame.dtype == np.uint8
        assert np.abs(frame.astype(int) - image.astype(int)).mean() < 8  # BGR, not RGB
        assert read_mrz(frame).lines == lines(CARD)
        daemon.config.document_camera = f"opencv:{tmp_path / 'gone.avi'}"
        with pytest.raises(DeviceError) as err:
            client.capture_document()
        assert err.value.code == "device_lost"
    finally:
        daemon.stop()
        thread.join(10)
