"""The operators' console in headless Chromium (Playwright) against a live registry
(uvicorn, SQLite): sign-in with a TOTP code, a case decided both ways, four eyes, an
adjudicator kept out of the admin pages, a look-up refused without a reason, every view
audited, images never cacheable. Screenshots of each page go to
``test-artifacts/screenshots/console-*.png`` (or ``$RNP_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
import uvicorn
from helpers import (
    PACKET_PUB,
    SIGNING_PUB,
    Registry,
    demographics,
    fingers,
    free_port,
    register_kiosk,
    settings_for,
)
from sqlalchemy import func, select

from central_api.adjudication.models import AdjudicationCase
from central_api.audit.models import AuditEvent
from central_api.db import migrate, transaction
from central_api.enrolment.models import Enrolment
from central_api.main import create_app
from central_api.operators import service as ops
from central_api.operators.models import Operator
from kiosk.client import CentralClient, KioskIdentity
from kiosk.outbox import Outbox, SyncWorker
from kiosk.session import Operators

pw = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("RNP_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PASSWORD = "correct horse battery 7"


@pytest.fixture(scope="module")
def live(tmp_path_factory, template, photo) -> Iterator[dict]:  # type: ignore[no-untyped-def,type-arg]
    work = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{work / 'central.db'}"
    migrate(url)
    kiosk = KioskIdentity.generate("KIOSK-RABAT-07")
    register_kiosk(url, kiosk)
    # a target FPIR that no match reaches: a known person coming back is adjudicated
    app = create_app(settings_for(url, dedup_target_fpir=1e-80))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    registry = app.state.registry
    secrets: dict[str, bytes] = {}
    with transaction(registry.sessions) as s:
        for who, role in [
            ("adj.amina", "adjudicator"),
            ("adj.karim", "adjudicator"),
            ("sen.nadia", "senior_adjudicator"),
            ("admin.omar", "registrar_admin"),
            ("aud.salma", "auditor"),
        ]:
            creds = ops.add_operator(s, registry.cipher, who, role, "test", password=PASSWORD)
            secrets[who] = creds.totp_secret
        s.get(Operator, "adj.karim").must_change_password = False  # type: ignore[union-attr]
    client = httpx.Client(base_url=base, timeout=120)
    reg = Registry(client, kiosk)  # type: ignore[arg-type]
    obama = fingers(4242)

    def enrol(name: str, **kw: object) -> str:
        p = reg.packet([template(name)], photo(name), fingerprints=obama, **kw)
        reg.submit(p)
        deadline = time.monotonic() + 120
        while (st := reg.get(p.packet_id).json())["status"] in ("received", "processing"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        return str(st["status"])

    assert enrol("obama__obama.jpg") == "issued"
    # Obama again under another name and birth date (identity fraud), and once more
    fraud = demographics(surname_latin="Benali", date_of_birth=date(1990, 2, 15))
    assert enrol("obama__obama3.jpg", demographics=fraud) == "adjudication"
    assert enrol("obama__obama2.jpg") == "adjudication"
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield {
            "browser": browser,
            "base": base,
            "secrets": secrets,
            "registry": registry,
            "kiosk": kiosk,
            "work": work,
        }
        browser.close()
    server.should_exit = True
    thread.join(10)
    client.close()


class Operator_:
    """One operator at their own browser (their own cookies)."""

    def __init__(self, live: dict, who: str) -> None:  # type: ignore[type-arg]
        self.live, self.who, self.n = live, who, 0
        self.context = live["browser"].new_context(viewport={"width": 1440, "height": 1000})
        self.page = self.context.new_page()
        self.images: list[tuple[str, int, str]] = []
        self.page.on(
            "response",
            lambda r: (
                self.images.append((r.url, r.status, r.headers.get("cache-control", "")))
                if "/console/img/" in r.url
                else None
            ),
        )
        SHOTS.mkdir(parents=True, exist_ok=True)

    def go(self, path: str) -> None:
        self.page.goto(self.live["base"] + path)

    def shot(self, what: str) -> None:
        self.n += 1
        self.page.screenshot(
            path=str(SHOTS / f"console-{self.who}-{self.n:02d}-{what}.png"), full_page=True
        )

    def sign_in(self, shoot: bool = False) -> None:
        self.go("/console/")
        assert "/console/login" in self.page.url
        self.page.fill("#operator", self.who)
        self.page.fill("#password", PASSWORD)
        if shoot:
            self.shot("sign-in")
        self.page.fill("#code", ops.totp(self.live["secrets"][self.who]))
        self.page.click("button.primary")
        self.page.wait_for_load_state()

    def see_all(self) -> None:
        """Scroll through the page (finger plots load lazily) and wait for its images."""
        height = int(self.page.evaluate("document.body.scrollHeight"))
        for y in range(0, height + 800, 800):
            self.page.evaluate(f"window.scrollTo(0, {y})")
            self.page.wait_for_timeout(50)
        self.page.wait_for_load_state("networkidle")
        self.page.evaluate("window.scrollTo(0, 0)")

    def own_password(self) -> None:
        """Replace the temporary password with one's own (the account page)."""
        self.go("/console/account")
        self.page.fill("#current", PASSWORD)
        self.page.fill("#new", f"{self.who}'s own passphrase 2026")
        self.page.fill("#again", f"{self.who}'s own passphrase 2026")
        self.page.click("button.primary")

    def text(self) -> str:
        return str(self.page.inner_text("main"))


def test_console_in_a_browser(live) -> None:  # type: ignore[no-untyped-def]
    registry = live["registry"]
    amina = Operator_(live, "adj.amina")
    amina.sign_in(shoot=True)
    # a temporary password is changed first: every page leads to the account page
    assert "/console/account" in amina.page.url and "temporary" in amina.text()
    amina.shot("temporary-password")
    amina.go("/console/cases")
    assert "change your temporary password" in amina.text()
    amina.own_password()
    assert "Password changed" in amina.text()

    # the queue, oldest first; take the first case
    amina.go("/console/cases")
    assert amina.page.locator("table.queue tbody tr").count() == 2
    amina.shot("queue")
    amina.page.click("#next-case")
    amina.page.wait_for_selector("section.candidate")
    case_one = int(amina.page.url.rsplit("/", 1)[1])
    amina.see_all()
    loaded = amina.page.eval_on_selector_all(
        "main img[src^='/console/img/']", "els => els.map(e => e.complete && e.naturalWidth > 0)"
    )
    assert loaded and all(loaded), loaded
    assert "Benali" in amina.text() and "differs" in amina.text()
    amina.shot("case-identity-fraud")
    # a second adjudicator cannot open it while Amina holds it
    karim = Operator_(live, "adj.karim")
    karim.sign_in()
    karim.go(f"/console/cases/{case_one}")
    assert "claim the case first" in karim.text()
    karim.go("/console/cases")
    assert "with another adjudicator" in karim.text()
    karim.shot("queue-case-held-by-another")
    # the machine leans "different persons" (unreachable duplicate threshold): "same person"
    # goes against it and waits for a second eye
    amina.page.check("input[name=decision][value=same_person]")
    amina.page.select_option("#reason_code", "identity_fraud")
    amina.page.fill("#note", "Same face and fingers, another name and date of birth.")
    amina.shot("case-decision")
    amina.page.click("form.decide button.primary")
    assert "waits for a second adjudicator" in amina.text()

    # an adjudicator is kept out of the admin pages
    for path in ("/console/operators", "/console/kiosks", "/console/audit"):
        amina.go(path)
        assert "your role does not open this page" in amina.text(), path
    amina.shot("admin-page-refused")

    # the second eye: a senior who is not Amina confirms; the first eye cannot
    nadia = Operator_(live, "sen.nadia")
    nadia.sign_in()
    nadia.own_password()
    nadia.go("/console/cases?status=second_review")
    assert nadia.page.locator("table.queue tbody tr").count() == 1
    nadia.page.click("table.queue tbody tr button")
    nadia.page.wait_for_selector("#review")
    nadia.see_all()
    assert "adj.amina decided same person" in nadia.text()
    nadia.shot("second-eye")
    nadia.page.check("input[name=verdict][value=confirm]")
    nadia.page.select_option("#review_reason", "evidence_confirms")
    nadia.page.click("form.decide button.primary")
    assert "in effect" in nadia.text()

    # Karim decides the other case "different persons" (with the machine): issued at once
    karim.go("/console/cases")
    karim.page.click("#next-case")
    karim.page.wait_for_selector("section.candidate")
    case_two = int(karim.page.url.rsplit("/", 1)[1])
    karim.see_all()
    karim.page.check("input[name=decision][value=different_persons]")
    karim.page.select_option("#reason_code", "faces_differ")
    karim.page.click("form.decide button.primary")
    assert "in effect" in karim.text()
    with registry.sessions() as s:
        outcomes = {
            c.id: (c.outcome, s.get(Enrolment, c.enrolment_id).status)  # type: ignore[union-attr]
            for c in s.scalars(select(AdjudicationCase))
        }
    assert outcomes == {
        case_one: ("same_person", "duplicate"),
        case_two: ("different_persons", "issued"),
    }

    # a look-up: the browser will not send it without a reason, nor will the server take it
    karim.go("/console/lookup")
    with registry.sessions() as s:
        receipt = s.get(Enrolment, s.get(AdjudicationCase, case_one).enrolment_id).receipt_number  # type: ignore[union-attr]
    karim.page.select_option("#kind", "receipt")
    karim.page.fill("#value", receipt)
    karim.page.click("form.narrow button.primary")
    assert "/console/lookup" in karim.page.url and "found" not in karim.text()
    csrf = karim.page.get_attribute("input[name=csrf]", "value")
    r = karim.page.request.post(
        live["base"] + "/console/lookup",
        form={"csrf": str(csrf), "kind": "receipt", "value": receipt},
    )
    assert r.status == 422
    karim.page.select_option("#reason", "fraud_investigation")
    karim.page.click("form.narrow button.primary")
    assert "1 found" in karim.text() and "Benali" in karim.text()
    karim.page.wait_for_load_state("networkidle")
    karim.shot("lookup")

    # the auditor: the audit trail and the fraud flag
    salma = Operator_(live, "aud.salma")
    salma.sign_in()
    salma.own_password()
    salma.go("/console/fraud")
    assert "two identities" in salma.text() and "surname latin" in salma.text()
    salma.shot("fraud-flags")
    salma.go("/console/audit?actor=adj.karim")
    assert "person.looked_up" in salma.text()
    salma.shot("audit-trail")
    salma.go("/console/")
    salma.shot("dashboard")
    assert "cases closed" in salma.text()

    # the registrar administrator: kiosks and operators
    omar = Operator_(live, "admin.omar")
    omar.sign_in()
    omar.own_password()
    omar.go("/console/kiosks")
    assert "KIOSK-RABAT-07" in omar.text()
    omar.shot("kiosks")
    omar.go("/console/operators")
    omar.page.fill("#operator_id", "adj.youssef")
    omar.page.select_option("#role", "adjudicator")
    omar.page.click("form.narrow button.primary")
    assert "shown once" in omar.text()
    secret = str(omar.page.inner_text("#new-secret"))
    omar.shot("operator-added")
    assert ops.totp(ops.secret_from_base32(secret))
    # a kiosk agent added here reaches the kiosk: its sync installs the signed list
    omar.go("/console/kiosk-operators")
    omar.page.fill("#kop_id", "agent.hind")
    omar.page.select_option("#kop_role", "supervisor")
    omar.page.fill("#kop_kiosks", live["kiosk"].kiosk_id)
    omar.page.click("form.narrow button.primary")
    pin = str(omar.page.inner_text("#new-pin"))
    omar.shot("kiosk-agent-added")
    kiosk_dir = live["work"] / "kiosk"
    kiosk_dir.mkdir()
    operators = Operators(kiosk_dir / "operators.json", kiosk_id=live["kiosk"].kiosk_id)
    operators.add("local-boot", "operator", "2468")
    client = CentralClient(live["base"], live["kiosk"], PACKET_PUB, SIGNING_PUB, retries=0)
    outbox = Outbox(kiosk_dir / "outbox.db", Outbox.load_key(kiosk_dir / "outbox.key"))
    worker = SyncWorker(outbox, client, refresh=lambda: operators.sync(client, SIGNING_PUB)).start()
    try:
        worker.refresh_soon()
        deadline = time.monotonic() + 20
        while operators.version == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        client.close()
    assert operators.authenticate("agent.hind", pin, "supervisor") == "supervisor"

    # every view of personal data is audited: each case page opened, each look-up
    with registry.sessions() as s:
        views = dict(
            s.execute(
                select(AuditEvent.action, func.count())
                .where(AuditEvent.action.in_(["case.viewed", "person.looked_up"]))
                .group_by(AuditEvent.action)
            ).all()
        )
    # (the look-up refused for want of a reason showed nothing: it is not a view)
    assert views == {"case.viewed": 3, "person.looked_up": 1}, views
    # images: served to the holder only, never cacheable
    shown = amina.images + nadia.images + karim.images
    assert shown and all(st == 200 and cc == "no-store, max-age=0" for _, st, cc in shown), [
        (st, cc) for _, st, cc in shown
    ]
    other = Operator_(live, "adj.karim")
    r = other.page.request.get(amina.images[0][0], max_redirects=0)
    assert r.status == 303 and "login" in r.headers["location"]
    with registry.sessions() as s:
        signed_in = select(func.count()).where(AuditEvent.action == "operator.signed_in")
        assert (s.scalar(signed_in) or 0) >= 5
