"""End-to-end: a citizen clicks through the kiosk UI in headless Chromium (Playwright).

Real parts all along: the kiosk UI (uvicorn), the device daemon over ZeroMQ with simulated
devices and an emulated card read through pcscd + vpcd, the outbox, and a registry in its own
process that is stopped and restarted for the network test. Screenshots of every step go to
``test-artifacts/screenshots`` (or ``$RNP_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from helpers import (
    PACKET_PUB,
    SIGNING_PUB,
    demographics,
    evidence,
    free_port,
    registry_cli,
    registry_env,
    serve_registry,
)

from central_api.enrolment.schemas import Document
from central_api.identity.idcs import verhoeff_digit
from devices.bus import DeviceClient
from devices.daemon import DaemonConfig, DeviceDaemon
from devices.icao.mrz import td1
from kiosk.client import KioskIdentity, build_packet
from kiosk.session import KioskSettings, Operators
from kiosk.web import assemble, catalogue, create_app

pw = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python.sync_playwright")
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
    (SHOTS.parent / "step-times.json").unlink(missing_ok=True)  # this run's times only
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
    operators.add("sup-01", "supervisor", "135790")
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
            "follows_prompts": kw.get("follows_prompts", True),
            "card": {"mrz": mrz, "full_name": "BENALI AMINE", "photo": str(faces / card_photo)},
        },
        timeout=30,
    )


AXE = axe_playwright.Axe() if axe_playwright else None
AXE_STATES: list[str] = []


def accessible(page, state: str) -> None:  # type: ignore[no-untyped-def]
    """axe-core (WCAG 2 A/AA rules) finds no violation on the page as it is now."""
    assert AXE is not None
    result = AXE.run(page)
    AXE_STATES.append(state)
    problems = [
        f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}" for v in result.response["violations"]
    ]
    assert not problems, f"{state}: {problems}"


def pdf_text(page, url: str, paper: str, out: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Print ``url`` to PDF as the kiosk's printer would (the page's own @page size), and
    return the text pdftotext extracts and pdfinfo's page size."""
    page.goto(f"{url}?paper={paper}")
    page.emulate_media(media="print")
    page.pdf(path=str(out), prefer_css_page_size=True, print_background=True)
    page.emulate_media(media="screen")
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True)
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True).stdout
    size = next((line for line in info.splitlines() if line.startswith("Page size")), "")
    return text.stdout, size


class Citizen:
    """Drives the page like a person (and saves what they saw)."""

    def __init__(self, stack: dict, name: str) -> None:  # type: ignore[type-arg]
        self.page = stack["context"].new_page()
        self.base, self.name, self.n = stack["base"], name, 0
        self.started = time.monotonic()
        SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(self, what: str) -> None:
        """A screenshot of what the person sees now, and when (the step times' log:
        ``step-times.json`` beside the screenshots; reported, never asserted)."""
        self.n += 1
        self.page.screenshot(
            path=str(SHOTS / f"{self.name}-{self.n:02d}-{what}.png"), full_page=True
        )
        log = SHOTS.parent / "step-times.json"
        times = json.loads(log.read_text()) if log.exists() else {}
        times.setdefault(self.name, []).append([what, round(time.monotonic() - self.started, 2)])
        log.write_text(json.dumps(times, indent=1))

    def step(self) -> str:
        return str(self.page.locator("body").get_attribute("data-step"))

    def wait_step(self, step: str, timeout: float = 90) -> None:
        self.page.wait_for_selector(f"body[data-step={step}]", timeout=timeout * 1000)

    def error(self) -> str | None:
        box = self.page.locator("#error")
        return box.get_attribute("data-code") if box.count() else None

    def start(self, language: str) -> None:
        self.page.goto(self.base)
        if self.step() not in ("welcome", "receipt"):  # someone left half-way: start afresh
            self.page.click("#cancel")
            self.page.click("#cancel-yes")
            self.wait_step("welcome")
        if self.step() == "receipt":  # the previous citizen's receipt is still up
            self.page.click("#finish")
        else:
            self.shot("welcome")
            self.page.click("#start")
        self.wait_step("language")
        self.page.click(f"#lang-{language}")
        self.wait_step("document")

    def device(self, button: str, while_working=None) -> None:  # type: ignore[no-untyped-def]
        """Touch a button that starts a device (sent in the background while the page shows
        live feedback), and wait for the next page; ``while_working`` runs meanwhile."""
        with self.page.expect_navigation(timeout=120_000):
            self.page.click(button)
            if while_working is not None:
                while_working()

    def scan_card(self) -> None:
        """Show the card's back to the document camera: nothing typed."""
        for _ in range(20):
            self.device("#scan-card")
            if self.error() != "card_no_card":
                return
            time.sleep(0.3)

    def read_card(self, number: str, birth: str = "1990-02-15", expiry: str = "2034-12-31") -> None:
        for _ in range(20):
            if self.page.locator("#typed-entry[open]").count() == 0:
                self.page.click("#typed-entry > summary")
            self.page.fill("#number", number)
            self.page.fill("#birth", birth)
            self.page.fill("#expiry", expiry)
            self.page.click("#read-card")
            self.page.wait_for_load_state()
            if self.error() != "card_no_card":
                return
            time.sleep(0.3)

    def face_and_fingers(self, missing_ok: bool = False) -> None:
        if self.step() != "fingers":  # (unless a supervisor already accepted the face)
            self.wait_step("face")
            self.shot("face")
            for _ in range(2):  # a person whose first try fails tries once more
                self.device("#capture-face")
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
                self.device("#capture-finger")
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


def test_arabic_enrolment_right_to_left_through_to_the_receipt(stack, faces_dir, tmp_path):
    """The card's MRZ is read by the document camera (nothing typed), the steps are counted
    and spoken, the review is in plain Arabic, and the 80 mm receipt prints the whole IDCS."""
    present(stack, faces_dir, "obama__obama.jpg", "obama__obama2.jpg", "AR1001")
    c = Citizen(stack, "ar")
    c.page.goto(c.base)
    accessible(c.page, "welcome")
    c.start("ar")
    html = c.page.locator("html")
    assert html.get_attribute("dir") == "rtl" and html.get_attribute("lang") == "ar"
    assert "بطاقة تعريفك" in c.page.inner_text("h1")
    assert "2 / 6" in c.page.inner_text("#progress")
    voice = c.page.get_attribute("body", "data-voice")
    assert voice == "/static/voice/ar/step.document.wav"
    assert c.page.request.get(c.base + voice).headers["content-type"] == "audio/x-wav"
    c.shot("document")
    accessible(c.page, "ar-document")
    c.scan_card()  # the OCR'd MRZ opens the chip: nothing was typed
    assert c.step() == "face", c.error()
    c.face_and_fingers()
    assert "تحقق من معلوماتك" in c.page.inner_text("h1")
    assert c.page.inner_text("#review-sex").strip() == "ذكر"
    assert c.page.inner_text("#review-dob").strip() == "15/02/1990"
    assert c.page.inner_text("#review-nationality").strip() == "مغربية"
    assert "البطاقة الوطنية للتعريف الإلكترونية" in c.page.inner_text("#review-document")
    assert c.page.locator("#review-photo").evaluate("img => img.naturalWidth") > 0
    accessible(c.page, "ar-review")
    c.confirm()
    assert c.final_status() == "issued"
    idcs = c.page.inner_text("#idcs").strip()
    assert re.fullmatch(r"\d{10}", idcs)
    assert "تم منح معرفك" in c.page.inner_text("#receipt-status")
    assert c.page.inner_text("#status-icon").strip() == "✅"
    assert c.page.locator("#qr svg").count() == 1
    accessible(c.page, "ar-receipt")
    number = c.page.inner_text("#receipt-number").strip()
    # the printable receipt: receipt number and QR, nothing biometric; printed on an 80 mm
    # roll and on A4, nothing clipped (the PDF's text holds the whole IDCS and number)
    url = f"{c.base}/receipt/{c.page.get_attribute('#receipt', 'data-packet')}"
    for paper, width in (("80mm", 80 / 25.4 * 72), ("a4", 210 / 25.4 * 72)):
        text, size = pdf_text(c.page, url, paper, tmp_path / f"receipt-ar-{paper}.pdf")
        shutil.copy(tmp_path / f"receipt-ar-{paper}.pdf", SHOTS / f"ar-receipt-{paper}.pdf")
        assert idcs in text and number in text, (paper, text)
        assert "السجل الوطني للسكان" in text or "للسكان" in text
        assert abs(float(size.split()[2]) - width) < 1.0, size  # points (1/72 in)
    c.page.goto(url)
    c.shot("printable")
    assert c.page.locator("img").count() == 0 and "RNP-" in c.page.inner_text("#receipt-number")
    c.page.close()


def test_french_card_failure_then_missing_finger(stack, faces_dir, tmp_path):
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
    accessible(c.page, "fr-document")
    # typed by hand, as Moroccans write dates: a wrong one is named, what was typed stays
    c.read_card("FR2002", birth="31/02/1990")
    assert c.error() == "card_bad_birth"
    assert c.page.get_attribute("#birth", "aria-invalid") == "true"
    assert "15/02/1990" in c.page.inner_text("#birth-error")
    assert c.page.input_value("#number") == "FR2002"
    assert c.page.input_value("#birth") == "31/02/1990"
    c.shot("card-bad-date")
    accessible(c.page, "fr-card-bad-date")
    c.read_card("FR2003", birth="15/02/1990", expiry="31.12.2034")  # mistyped number
    assert c.error() == "card_access_denied"
    assert "La carte a refusé ces informations." in c.page.inner_text("#error")
    assert "Vérifiez le numéro" in c.page.inner_text("#error")
    c.shot("card-refused")
    c.read_card("FR2002", birth="15/02/1990", expiry="31/12/2034")
    c.face_and_fingers(missing_ok=True)
    assert "exceptions: 1" in c.page.inner_text("#review-fingers")
    assert c.page.inner_text("#review-sex").strip() == "Homme"
    assert c.page.inner_text("#review-dob").strip() == "15/02/1990"
    assert c.page.inner_text("#review-nationality").strip() == "Marocaine"
    assert "Carte nationale d'identité électronique" in c.page.inner_text("#review-document")
    accessible(c.page, "fr-review")
    c.confirm()
    assert c.final_status() == "issued"
    idcs, number = c.page.inner_text("#idcs").strip(), c.page.inner_text("#receipt-number")
    url = f"{c.base}/receipt/{c.page.get_attribute('#receipt', 'data-packet')}"
    text, _ = pdf_text(c.page, url, "80mm", tmp_path / "receipt-fr-80mm.pdf")
    shutil.copy(tmp_path / "receipt-fr-80mm.pdf", SHOTS / "fr-receipt-80mm.pdf")
    assert idcs in text and number.strip() in text and "Royaume du Maroc" in text
    c.page.goto(c.base)
    # later, at any kiosk: the receipt checked with the date of birth (a wrong date says
    # only that nothing was found), from the welcome page
    c.page.click("#finish")
    c.page.click("#cancel")
    c.page.click("#cancel-yes")
    c.wait_step("welcome")
    c.page.click("#check-receipt")
    c.page.fill("#lookup-receipt", number.strip().lower().replace("rnp-", ""))
    c.page.fill("#lookup-birth", "16/02/1990")
    c.page.click("#lookup-check")
    assert c.page.get_attribute("#lookup-answer", "data-outcome") == "not_found"
    c.page.fill("#lookup-receipt", number.strip())
    c.page.fill("#lookup-birth", "15.02.1990")
    c.page.click("#lookup-check")
    assert c.page.get_attribute("#lookup-answer", "data-outcome") == "found"
    assert c.page.get_attribute("#lookup-answer", "data-status") == "issued"
    assert idcs[-4:] in c.page.inner_text("#lookup-idcs") and idcs not in c.page.content()
    c.shot("receipt-lookup")
    accessible(c.page, "fr-receipt-lookup")
    c.page.click("#lookup-back")
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
    # the agent starts a shift: a wrong PIN says so, with what to do next
    c.page.fill("#signin-id", "op-01")
    c.page.fill("#signin-pin", "1111")
    c.page.click("#signin")
    assert c.page.get_attribute("#agent-notice", "data-code") == "error.operator_denied"
    assert "Wrong agent id or PIN." in c.page.inner_text("#agent-notice")
    c.shot("agent-wrong-pin")
    c.page.fill("#signin-id", "op-01")
    c.page.fill("#signin-pin", "2468")
    c.page.click("#signin")
    assert "op-01" in c.page.inner_text("#shift")
    accessible(c.page, "en-agent-console")
    form = c.page.locator("#reveal-form")
    form.locator("#reveal-receipt").fill(receipt)
    form.locator("#reveal").click()
    c.page.wait_for_selector("#agent-notice", timeout=90_000)
    c.shot("agent-idcs-shown")
    assert re.fullmatch(r"\d{10}", c.page.inner_text("#revealed-idcs").strip())
    c.page.goto(f"{c.base}/agent")  # shown once
    assert c.page.locator("#revealed-idcs").count() == 0
    c.page.click("#signout")
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


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_the_journey_has_no_dead_ends(stack, faces_dir, language):
    """Language switch on every page, Back, Cancel that asks first, the idle warning that
    typing dismisses, witnesses' IDCS checked at once, and a neutral welcome afterwards."""
    present(stack, faces_dir, "biden__biden.jpg", "biden__biden2.jpg", "JR5005")
    kiosk = stack["kiosk"]
    c = Citizen(stack, f"journey-{language}")
    c.start(language)
    other = "ar" if language == "fr" else "fr"
    c.page.click(f"#switch-{other}")  # the switch keeps the step
    assert c.step() == "document" and c.page.get_attribute("html", "lang") == other
    c.page.click(f"#switch-{language}")
    # the agent console, in the citizen's language: a wrong PIN says so and what to do
    c.page.goto(f"{c.base}/agent")
    c.page.fill("#signin-id", "op-01")
    c.page.fill("#signin-pin", "0000")
    c.page.click("#signin")
    wrong = {
        "fr": "Identifiant ou code PIN d'agent incorrect.",
        "ar": catalogue("ar")["error.operator_denied"],
    }
    assert wrong[language] in c.page.inner_text("#agent-notice")
    c.shot("agent-wrong-pin")
    c.page.fill("#signin-id", "op-01")
    c.page.fill("#signin-pin", "2468")
    c.page.click("#signin")
    assert c.page.locator("#today").count() == 1 and c.page.locator("#operators").count() == 1
    c.shot("agent-console")
    accessible(c.page, f"{language}-agent-console")
    c.page.click("#signout")
    c.page.goto(c.base)
    assert c.step() == "document"
    # the no-document path: a mistyped witness IDCS is caught before any capture
    c.page.click("#no-document > summary")
    c.page.select_option("#nodoc-kind", "witnesses")
    c.page.fill("#witness1", "1234567890")
    c.page.fill("#witness2", "1234567891")
    c.page.fill("#nodoc-surname", "Idrissi")
    c.page.fill("#nodoc-given", "Salma")
    c.page.fill("#nodoc-dob", "15/02/1990")
    c.page.select_option("#nodoc-sex", "F")
    form = c.page.locator("#no-document")
    form.locator(".operator-id").fill("sup-01")
    form.locator(".operator-pin").fill("135790")
    c.page.click("#nodoc-submit")
    assert c.error() == "witnesses_invalid" and c.step() == "document"
    c.shot("witness-refused")
    # back one step, and forward again
    c.page.click("#back")
    c.wait_step("language")
    assert "1 / 6" in c.page.inner_text("#progress")
    c.page.click(f"#lang-{language}")
    c.wait_step("document")
    # "are you still there?" before the idle timeout; touching the screen dismisses it
    kiosk.session.settings.idle_timeout = 9.0
    try:
        c.page.reload()
        c.page.wait_for_selector("#idle-warning:not(.hidden)", timeout=15_000)
        c.shot("idle-warning")
        accessible(c.page, f"{language}-idle-warning")
        c.page.click("#still-here")
        assert c.page.locator("#idle-warning.hidden").count() == 1
        assert c.step() == "document"
    finally:
        kiosk.session.settings.idle_timeout = 180.0
    # Cancel asks first: "no" keeps everything, "yes" ends on a neutral welcome
    c.page.click("#cancel")
    accessible(c.page, f"{language}-cancel-question")
    c.page.click("#cancel-no")
    assert c.step() == "document"
    c.page.click("#cancel")
    c.page.click("#cancel-yes")
    c.wait_step("welcome")
    assert c.page.get_attribute("html", "lang") == "fr" and c.error() is None
    assert c.page.locator(".welcome-texts li[lang=ar]").count() == 1
    c.page.close()


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_a_face_that_keeps_failing_reaches_a_supervisor_decision(stack, faces_dir, language):
    """Someone who does not follow the blink-and-turn prompt fails liveness; after three tries
    the kiosk stops asking and a supervisor accepts the best capture (recorded in the
    packet), and the registry holds the enrolment for adjudication."""
    present(
        stack,
        faces_dir,
        "biden__biden.jpg",
        "biden__biden2.jpg",
        f"SV600{len(language)}",
        finger_person=36,
        follows_prompts=False,
    )
    c = Citizen(stack, f"{language}-face-supervisor")
    c.start(language)
    c.read_card(f"SV600{len(language)}", birth="15/02/1990", expiry="31/12/2034")
    c.wait_step("face")
    for attempt in range(1, 4):
        # each try, the person steps in again (a new camera session of the same person)
        stack["devices"].call("simulate.face", {"photo": str(faces_dir / "biden__biden.jpg")})

        def mirror() -> None:  # the mirror shows the camera while it runs (never stored)
            c.page.wait_for_selector("#preview:not(.hidden)", timeout=30_000)
            c.page.wait_for_selector(
                '#live[data-code]:not([data-code="feedback.step_into_frame"])', timeout=30_000
            )
            c.shot("face-preview")

        c.device("#capture-face", mirror if attempt == 1 else None)
        if attempt < 3:
            assert c.error() == "face_liveness", c.error()
            assert re.search(rf"{attempt + 1}\D+3", c.page.inner_text("#face-attempt"))
    assert c.error() == "face_supervisor"
    assert c.page.locator("#capture-face").count() == 0  # no loop: a person decides
    assert c.page.locator("#face-supervisor img").evaluate("img => img.naturalWidth") > 0
    c.shot("face-supervisor")
    accessible(c.page, f"{language}-face-supervisor")
    box = c.page.locator("#face-supervisor")
    box.locator(".operator-id").fill("op-01")
    box.locator(".operator-pin").fill("2468")
    box.locator("#face-accept").click()
    assert c.error() == "supervisor_needed"  # an agent may not accept it
    box = c.page.locator("#face-supervisor")
    box.locator(".operator-id").fill("sup-01")
    box.locator(".operator-pin").fill("135790")
    box.locator(".operator-note").fill("elderly, cannot follow the prompt")
    box.locator("#face-accept").click()
    c.wait_step("fingers")
    c.face_and_fingers()
    c.confirm()
    assert c.final_status() == "adjudication"
    assert c.page.inner_text("#status-icon").strip() == "⚖️"
    c.page.close()


def test_a_face_unlike_the_chip_photo_is_shown_beside_it_to_the_supervisor(stack, faces_dir):
    """At a 1:1 mismatch the supervisor sees the chip's photo beside the capture before
    confirming; a supervisor on duty (signed in at the agent console) confirms with no PIN on
    the citizen's screen."""
    present(stack, faces_dir, "tom_cruise__img1.jpg", "biden__biden2.jpg", "MM7007")
    c = Citizen(stack, "ar-face-mismatch")
    c.page.goto(f"{c.base}/agent")
    c.page.fill("#signin-id", "sup-01")
    c.page.fill("#signin-pin", "135790")
    c.page.click("#signin")
    assert "sup-01" in c.page.inner_text("#shift")
    c.start("ar")
    c.scan_card()
    c.device("#capture-face")
    assert c.error() == "face_document_mismatch", c.error()
    for photo in ("#chip-photo", "#capture-photo"):
        assert c.page.locator(photo).evaluate("img => img.naturalWidth") > 0
    assert "sup-01" in c.page.inner_text("#face-override .on-duty")
    c.shot("face-mismatch")
    accessible(c.page, "ar-face-mismatch")
    c.page.click("#face-override-submit")  # no PIN: the supervisor on duty
    c.wait_step("fingers")
    c.page.click("#cancel")
    c.page.click("#cancel-yes")
    c.wait_step("welcome")
    c.page.goto(f"{c.base}/agent")
    c.page.click("#signout")
    c.page.close()


def enrol_directly(stack: dict, template, photo, name: str, number: str) -> str:  # type: ignore[type-arg,no-untyped-def]
    """A person enrolled through this kiosk's own client (not the screen: the household
    desk is what is tested); their IDCS."""
    image = photo(name)
    demo = demographics(
        document=Document(type="CNIE", number=number, issuing_country="MAR"),
        given_names_latin=name.split("__")[0].split("_")[0].title(),
    )
    packet = build_packet(KIOSK_ID, demo, [template(name)], image, **evidence(image))  # type: ignore[arg-type]
    client = stack["kiosk"].worker.client
    client.submit(packet, wait=False)
    status = client.wait_final(packet.packet_id, timeout=300)
    assert status.status == "issued", status
    return str(status.idcs)


def arabic_digits(number: str) -> str:
    return number.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


def fill_household(page, members: list[tuple[str, str, str]], kind: str) -> None:  # type: ignore[no-untyped-def]
    """Fill the desk's form: the declarant's age then (IDCS, age, relation) of the others,
    and a ``poor`` household (eligible for both programmes) or a ``rich`` one (neither)."""
    page.fill("#member-0-age", members[0][1])
    for i, (idcs, age, relation) in enumerate(members[1:], start=1):
        page.fill(f"#member-{i}-idcs", idcs)
        page.fill(f"#member-{i}-age", age)
        page.select_option(f"#member-{i}-relation", relation)
    poor = kind == "poor"
    page.select_option("#housing", "rural_dwelling" if poor else "villa")
    page.fill("#rooms", "2" if poor else "6")
    page.check("#area-rural" if poor else "#area-urban")
    page.select_option("#region", "7")
    page.select_option("#occupation", "casual_worker" if poor else "employer")
    bills = (25, 8, 15, 50) if poor else (750, 250, 500, 100)
    for kind_, amount in zip(("electricity", "water", "telecom", "butane"), bills, strict=True):
        page.fill(f"#expense-{kind_}", str(amount))
    for good in () if poor else ("fridge", "television", "car", "computer", "air_conditioner"):
        page.check(f"#good-{good}")


def test_a_household_is_declared_in_arabic_after_a_face_check(stack, faces_dir, template, photo):
    """From the welcome screen, in Arabic, right to left: the IDCS typed in Arabic-Indic
    digits and a live face checked 1:1 by the registry before anything is shown; the form,
    the review in plain Arabic, the RSU reference, both programmes and why."""
    declarant = enrol_directly(stack, template, photo, "alex_lacamoire__img1.jpg", "HH1001")
    member = enrol_directly(stack, template, photo, "rose_leslie__img1.jpg", "HH1002")
    stack["devices"].call(
        "simulate.citizen", {"photo": str(faces_dir / "alex_lacamoire__img2.jpg")}, timeout=30
    )
    c = Citizen(stack, "ar-household")
    c.page.goto(c.base)
    c.page.click("#household")
    c.page.click("#switch-ar")
    assert c.page.locator("html").get_attribute("dir") == "rtl"
    desk = c.page.locator("#household-desk")
    assert desk.get_attribute("data-stage") == "identify"
    assert (
        c.page.get_attribute("body", "data-voice") == "/static/voice/ar/step.household_identify.wav"
    )
    assert c.page.locator("#household-form, #household-decisions").count() == 0
    c.shot("identify")
    accessible(c.page, "ar-household-identify")
    c.page.fill("#household-idcs-input", arabic_digits(declarant))
    c.device("#household-check")
    assert desk.get_attribute("data-stage") == "form", c.error()
    assert c.page.inner_text("#member-0-idcs").strip() == declarant
    assert "التصريح بأسرتك" in c.page.inner_text("h1")
    fill_household(c.page, [(declarant, "٤٤", ""), (member, "41", "spouse")], "poor")
    c.page.fill("#rooms", "0")  # a mistake: named, and nothing typed is lost
    c.page.click("#household-continue")
    assert c.error() == "household_bad_rooms"
    assert c.page.get_attribute("#rooms", "aria-invalid") == "true"
    assert c.page.input_value("#member-1-idcs") == member
    assert c.page.input_value("#expense-butane") == "50"
    c.shot("form-error")
    accessible(c.page, "ar-household-form-error")
    c.page.fill("#rooms", "2")
    c.page.click("#household-continue")
    assert desk.get_attribute("data-stage") == "review", c.error()
    assert "قروي" in c.page.inner_text("#review-area") and "مراكش آسفي" in c.page.inner_text(
        "#review-area"
    )
    assert "عامل مياوم" in c.page.inner_text("#review-occupation")
    c.shot("review")
    accessible(c.page, "ar-household-review")
    c.page.click("#household-submit")
    assert desk.get_attribute("data-stage") == "done", c.error()
    assert re.fullmatch(r"RSU-[0-9A-Z]{5}-[0-9A-Z]{5}", c.page.inner_text("#household-reference"))
    rows = c.page.locator("#household-decisions tbody tr")
    assert rows.count() == 2
    assert {rows.nth(i).get_attribute("data-eligible") for i in range(2)} == {"yes"}
    why = c.page.inner_text("#household-explanation")
    assert "أمو تضامن" in why and "مؤهل" in why
    c.shot("done")
    accessible(c.page, "ar-household-done")
    c.page.click("#household-leave")
    assert c.step() == "welcome"
    assert c.page.locator("html").get_attribute("lang") != "ar"  # neutral again
    c.page.close()


def test_a_household_in_french_is_refused_then_looked_up_and_updated(
    stack, faces_dir, template, photo
):
    """In French: someone else's face for an IDCS is not verified (and shows nothing); the
    right face opens the form; a member not in the register is named; a rich household is
    eligible for neither programme; the status look-up later shows the score and why, and
    an update becomes the household's second declaration."""
    declarant = enrol_directly(stack, template, photo, "kit_harington__john1.jpeg", "HH2001")
    member = enrol_directly(stack, template, photo, "lin_manuel_miranda__img1.png", "HH2002")
    c = Citizen(stack, "fr-household")

    def at_camera(name: str) -> None:
        stack["devices"].call("simulate.citizen", {"photo": str(faces_dir / name)}, timeout=30)

    def identify(name: str) -> None:
        at_camera(name)
        c.page.goto(c.base)
        c.page.click("#household")
        c.page.click("#switch-fr")
        c.page.fill("#household-idcs-input", declarant)
        c.device("#household-check")

    identify("rose_leslie__img2.jpg")  # not the person holding this IDCS
    assert c.error() == "household_not_verified"
    assert "2" in c.page.inner_text("#attempts-left")
    assert c.page.locator("#household-form, #household-decisions").count() == 0
    c.shot("not-verified")
    c.page.click("#household-leave")

    identify("kit_harington__john2.jpeg")
    assert c.page.get_attribute("#household-desk", "data-stage") == "form", c.error()
    stranger = "987654321" + verhoeff_digit("987654321")
    fill_household(c.page, [(declarant, "35", ""), (stranger, "12", "child")], "rich")
    c.page.click("#household-continue")
    c.page.click("#household-submit")
    assert c.error() == "household_member_not_registered"
    assert c.page.get_attribute("#member-1-idcs", "aria-invalid") == "true"
    c.shot("member-not-registered")
    c.page.fill("#member-1-idcs", member)
    c.page.fill("#member-1-age", "40")
    c.page.select_option("#member-1-relation", "non_relative")
    c.page.click("#household-continue")
    c.page.click("#household-submit")
    assert c.page.get_attribute("#household-desk", "data-stage") == "done", c.error()
    rows = c.page.locator("#household-decisions tbody tr")
    assert {rows.nth(i).get_attribute("data-eligible") for i in range(2)} == {"no"}
    reference = c.page.inner_text("#household-reference").strip()
    assert "est supérieur de" in c.page.inner_text("#household-explanation")
    c.page.click("#household-leave")

    identify("kit_harington__john2.jpeg")  # later: the status, with the reasons
    assert c.page.get_attribute("#household-desk", "data-stage") == "status", c.error()
    assert c.page.inner_text("#household-reference").strip() == reference
    assert "Non éligible" in c.page.inner_text("#household-decisions")
    c.shot("status")
    accessible(c.page, "fr-household-status")
    c.page.click("#household-update")
    assert c.page.input_value("#member-1-idcs") == member  # the form starts from the last one
    assert c.page.input_value("#expense-electricity") == "750"
    c.page.uncheck("#good-car")
    c.page.click("#household-continue")
    c.page.click("#household-submit")
    assert c.page.get_attribute("#household-desk", "data-stage") == "done", c.error()
    assert c.page.inner_text("#household-version").strip() == "2"
    c.page.click("#household-leave")
    c.page.close()
