"""End-to-end: a citizen clicks through the kiosk UI in headless Chromium (Playwright).

Real parts all along: the kiosk UI (uvicorn), the device daemon over ZeroMQ with simulated
devices and an emulated card read through pcscd + vpcd, the outbox, and a registry in its own
process that is stopped and restarted for the network test. Screenshots of every step go to
``test-artifacts/screenshots`` (or ``$RNP_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from helpers import PACKET_PUB, SIGNING_PUB, free_port, registry_cli, registry_env, serve_registry

from devices.bus import DeviceClient
from devices.daemon import DaemonConfig, DeviceDaemon
from devices.icao.mrz import td1
from kiosk.client import KioskIdentity
from kiosk.session import KioskSettings, Operators
from kiosk.web import assemble, create_app

pw = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("RNP_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KIOSK_ID = "KIOSK-E2E-01"


class Registry:
    """A registry process that the test can stop and start again (same port, same data)."""

    def __init__(self, work: Path, identity: KioskIdentity) -> None:
        self.work, self.port = work, free_port()
        self.env = registry_env(f"sqlite:///{work / 'central.db'}")
        self.public_keys = (PACKET_PUB, SIGNING_PUB)
        registry_cli("migrate", env=self.env)
        registry_cli("kiosk-add", KIOSK_ID, "--public-key", identity.public_key_b64(), env=self.env)
        self.url = f"http://127.0.0.1:{self.port}"
        self._stack: contextlib.ExitStack | None = None

    def start(self) -> None:
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(serve_registry(self.env, self.work / "central.log", self.port))

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


@pytest.fixture(scope="module")
def stack(pcscd, tmp_path_factory) -> Iterator[dict]:  # type: ignore[type-arg]
    work = tmp_path_factory.mktemp("e2e")
    identity = KioskIdentity.generate(KIOSK_ID)
    registry = Registry(work, identity)
    registry.start()
    sockets = work / "devices"
    daemon = DeviceDaemon(DaemonConfig(socket_dir=sockets, simulated=True))
    dthread = threading.Thread(target=daemon.serve, daemon=True)
    dthread.start()
    assert daemon.ready.wait(10)
    devices = DeviceClient(sockets)
    (work / "trust").mkdir()
    (work / "trust" / "csca.pem").write_text(str(devices.call("simulate.csca").result["pem"]))
    operators = Operators(work / "operators.json", work / "kiosk")
    operators.add("op-01", "operator", "2468")
    kiosk = assemble(
        KioskSettings(KIOSK_ID, centre="Arrondissement Agdal, Rabat", trust_dir=work / "trust"),
        work / "kiosk",
        registry.url,
        registry.public_keys,
        identity,
        devices,
        operators,
    )
    kiosk.worker.backoff, kiosk.worker.max_backoff = 0.5, 2.0  # type: ignore[union-attr]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(kiosk), port=port, log_level="warning"))
    uthread = threading.Thread(target=server.run, daemon=True)
    uthread.start()
    while not server.started:
        time.sleep(0.05)
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        # one browser, as at a real kiosk: the session belongs to its cookie
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield {
            "browser": browser,
            "context": context,
            "base": f"http://127.0.0.1:{port}",
            "devices": devices,
            "registry": registry,
            "kiosk": kiosk,
        }
        browser.close()
    server.should_exit = True
    uthread.join(10)
    kiosk.worker.stop()  # type: ignore[union-attr]
    daemon.stop()
    dthread.join(10)
    registry.stop()


def present(stack: dict, faces: Path, photo: str, card_photo: str, number: str, **kw) -> None:  # type: ignore[type-arg,no-untyped-def]
    mrz = td1(number, "Benali", "Amine", "900215", "M", "341231")
    stack["devices"].call(
        "simulate.citizen",
        {
            "photo": str(faces / photo),
            "finger_person": kw.get("finger_person", 31),
            "missing": kw.get("missing", []),
            "card": {"mrz": mrz, "full_name": "BENALI AMINE", "photo": str(faces / card_photo)},
        },
        timeout=30,
    )


class Citizen:
    """Drives the page like a person (and saves what they saw)."""

    def __init__(self, stack: dict, name: str) -> None:  # type: ignore[type-arg]
        self.page = stack["context"].new_page()
        self.base, self.name, self.n = stack["base"], name, 0
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, what: str) -> None:
        self.n += 1
        self.page.screenshot(
            path=str(SHOTS / f"{self.name}-{self.n:02d}-{what}.png"), full_page=True
        )

    def step(self) -> str:
        return str(self.page.locator("body").get_attribute("data-step"))

    def wait_step(self, step: str, timeout: float = 90) -> None:
        self.page.wait_for_selector(f"body[data-step={step}]", timeout=timeout * 1000)

    def error(self) -> str | None:
        box = self.page.locator("#error")
        return box.get_attribute("data-code") if box.count() else None

    def start(self, language: str) -> None:
        self.page.goto(self.base)
        if self.step() == "receipt":  # the previous citizen's receipt is still up
            self.page.click("#finish")
        else:
            self.shot("welcome")
            self.page.click("#start")
        self.wait_step("language")
        self.page.click(f"#lang-{language}")
        self.wait_step("document")

    def read_card(self, number: str, birth: str = "1990-02-15", expiry: str = "2034-12-31") -> None:
        for _ in range(20):
            self.page.fill("#number", number)
            self.page.fill("#birth", birth)
            self.page.fill("#expiry", expiry)
            self.page.click("#read-card")
            self.page.wait_for_load_state()
            if self.error() != "card_no_card":
                return
            time.sleep(0.3)

    def face_and_fingers(self, missing_ok: bool = False) -> None:
        self.wait_step("face")
        self.shot("face")
        for _ in range(2):  # a person whose first try fails tries once more
            self.page.click("#capture-face")
            self.page.wait_for_load_state()
            self.page.wait_for_selector("body:not([data-step=face]), #error", timeout=90_000)
            if self.step() != "face":
                break
            self.shot("face-error")
        assert self.step() == "fingers", self.error()
        self.shot("fingers")
        while self.step() == "fingers":
            if self.error() in ("finger_no_finger", "finger_unusable"):
                assert missing_ok, self.error()
                self.shot("finger-missing")
                form = self.page.locator("#finger-exception")
                form.locator("#exception-reason").select_option("amputated")
                form.locator(".operator-id").fill("op-01")
                form.locator(".operator-pin").fill("2468")
                form.locator("#exception-submit").click()
            else:
                self.page.click("#capture-finger")
            self.page.wait_for_load_state()
        self.wait_step("review")
        self.shot("review")

    def confirm(self) -> None:
        self.page.fill("#place_of_birth", "Rabat")
        self.page.fill("#address", "7 Rue Oued Fès, Agdal, Rabat")
        self.page.click("#confirm")
        self.wait_step("receipt")
        self.shot("receipt")

    def final_status(self, timeout: float = 300) -> str:
        """The decision shown on the receipt; the registry makes its templates from the ten
        finger images first (a new extraction process loads LEADER: tens of seconds here)."""
        self.page.wait_for_selector(
            "#receipt-status:is([data-status=issued],[data-status=duplicate],[data-status=adjudication])",
            timeout=timeout * 1000,
        )
        self.shot("decision")
        return str(self.page.locator("#receipt-status").get_attribute("data-status"))


def test_arabic_enrolment_right_to_left_through_to_the_receipt(stack, faces_dir):
    present(stack, faces_dir, "obama__obama.jpg", "obama__obama2.jpg", "AR1001")
    c = Citizen(stack, "ar")
    c.start("ar")
    html = c.page.locator("html")
    assert html.get_attribute("dir") == "rtl" and html.get_attribute("lang") == "ar"
    assert "بطاقة تعريفك" in c.page.inner_text("h1")
    c.shot("document")
    c.read_card("AR1001")
    c.face_and_fingers()
    assert "تحقق من معلوماتك" in c.page.inner_text("h1")
    c.confirm()
    assert c.final_status() == "issued"
    assert re.fullmatch(r"\d{10}", c.page.inner_text("#idcs").strip())
    assert "تم منح معرفك" in c.page.inner_text("#receipt-status")
    assert c.page.locator("#qr svg").count() == 1
    # the printable receipt: receipt number and QR, nothing biometric
    c.page.goto(f"{c.base}/receipt/{c.page.get_attribute('#receipt', 'data-packet')}")
    c.shot("printable")
    assert c.page.locator("img").count() == 0 and "RNP-" in c.page.inner_text("#receipt-number")
    c.page.close()


def test_french_card_failure_then_missing_finger(stack, faces_dir):
    present(
        stack,
        faces_dir,
        "kit_harington__john1.jpeg",
        "kit_harington__john2.jpeg",
        "FR2002",
        missing=[8],
        finger_person=32,
    )
    c = Citizen(stack, "fr")
    c.start("fr")
    c.read_card("FR2003")  # mistyped number: the chip refuses it
    assert c.error() == "card_access_denied"
    assert "La carte a refusé ces informations." in c.page.inner_text("#error")
    assert "Vérifiez le numéro" in c.page.inner_text("#error")
    c.shot("card-refused")
    c.read_card("FR2002")
    c.face_and_fingers(missing_ok=True)
    assert "exceptions: 1" in c.page.inner_text("#review-fingers")
    c.confirm()
    assert c.final_status() == "issued"
    c.page.close()


def test_a_returning_person_with_a_new_card_is_a_duplicate(stack, faces_dir):
    present(stack, faces_dir, "obama__obama2.jpg", "obama__obama.jpg", "EN3003")
    c = Citizen(stack, "en-duplicate")
    c.start("en")
    c.read_card("EN3003")
    c.face_and_fingers()
    c.confirm()
    assert c.final_status() == "duplicate"
    assert "already registered" in c.page.inner_text("#receipt-status")
    assert c.page.inner_text("#idcs").strip() == "—"
    # the citizen asks for the identifier they hold: the agent types the receipt, the kiosk
    # checks their live face with the registry, which shows the IDCS (once, on this screen)
    receipt = c.page.inner_text("#receipt-number").strip()
    c.page.goto(f"{c.base}/agent")
    form = c.page.locator("#reveal-form")
    form.locator("#reveal-receipt").fill(receipt)
    form.locator("input[name=operator_id]").fill("op-01")
    form.locator("input[name=pin]").fill("2468")
    form.locator("#reveal").click()
    c.page.wait_for_selector("#agent-notice", timeout=90_000)
    c.shot("agent-idcs-shown")
    assert re.fullmatch(r"\d{10}", c.page.inner_text("#revealed-idcs").strip())
    c.page.goto(f"{c.base}/agent")  # shown once
    assert c.page.locator("#revealed-idcs").count() == 0
    c.page.close()


def test_network_down_then_back(stack, faces_dir):
    registry = stack["registry"]
    registry.stop()
    present(  # another man, with fingers of his own
        stack, faces_dir, "tom_cruise__img1.jpg", "tom_cruise__img1.jpg", "ZG4004", finger_person=34
    )
    c = Citizen(stack, "zgh-offline")
    c.start("zgh")
    assert "ⵜⴰⴽⴰⵔⴹⴰ" in c.page.inner_text("h1")
    c.read_card("ZG4004")
    c.face_and_fingers()
    c.confirm()
    status = c.page.locator("#receipt-status")
    assert status.get_attribute("data-status") == "queued"  # saved here, sent later
    assert "RNP-" in c.page.inner_text("#receipt-number")
    c.shot("queued-offline")
    kiosk = stack["kiosk"]
    deadline = time.monotonic() + 15
    while kiosk.outbox.counts().get("queued") and kiosk.worker.online is not False:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert kiosk.worker.online is False
    registry.start()  # the network is back: the receipt on screen follows by itself
    assert c.final_status() == "issued"
    assert re.fullmatch(r"\d{10}", c.page.inner_text("#idcs").strip())
    c.page.close()
