"""The operators' console over HTTP (TestClient, on SQLite and PostgreSQL): sign-in with a
TOTP code, lockout, roles, CSRF, the case queue with exclusive claims, decisions both ways,
four eyes, fraud flags, look-ups with a reason, audit rows, image headers, and the kiosk's
status following the decision."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import (
    PACKET_PUB,
    SIGNING_PUB,
    Registry,
    capture,
    demographics,
    fingers,
    registry_env,
)
from sqlalchemy import select

from biometrics import face
from central_api.adjudication.models import AdjudicationCase, AdjudicationDecision, FraudFlag
from central_api.adjudication.service import probe_templates
from central_api.audit.models import AuditEvent
from central_api.db import transaction
from central_api.dedup.service import face_context, finger_reference
from central_api.enrolment.models import Enrolment
from central_api.enrolment.schemas import (
    DecisionNotAuthentic,
    OperatorList,
    QueryAnswer,
    ReceiptQuery,
    RevealAnswer,
    RevealRequest,
    WitnessQuery,
)
from central_api.identity.models import FaceReference
from central_api.identity.service import issue_person
from central_api.operators import service as ops
from central_api.operators.models import ConsoleSession, Operator
from kiosk.client import KioskIdentity
from kiosk.session import Operators, StepError

OBAMA = 4242
METRICS = "metrics-token-of-the-console-tests"
NOTE = "Same face and fingers, another name and date of birth"


def test_totp_is_rfc_6238() -> None:
    """RFC 4226 appendix D / RFC 6238 appendix B (SHA-1 seed, 6 digits)."""
    secret = b"12345678901234567890"
    assert ops.totp(secret, at=59) == "287082"  # step 1; RFC 6238's 8-digit code is 94287082
    assert ops.totp(secret, at=1111111109) == "081804"
    assert ops.totp(secret, at=1234567890) == "005924"
    assert ops.secret_from_base32(ops.secret_base32(secret)) == secret
    uri = ops.provisioning_uri("adj.one", secret)
    assert uri.startswith("otpauth://totp/RNP%20console%3Aadj.one?secret=GEZDGNBVGY3TQOJQ")


@pytest.fixture
def console(registry_factory: Callable[..., Registry]) -> Iterator[Console]:
    # a target FPIR no match reaches: every match of a known person is adjudicated
    reg = registry_factory(dedup_target_fpir=1e-80, metrics_token=METRICS)
    yield Console(reg)


class Console:
    """The registry under test, its operators, and a browser-like client per operator."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.registry = reg.app.state.registry
        self.secrets: dict[str, bytes] = {}
        self.passwords: dict[str, str] = {}

    def add(self, operator_id: str, role: str) -> None:
        with transaction(self.registry.sessions) as s:
            creds = ops.add_operator(
                s, self.registry.cipher, operator_id, role, "test", password="a long password 1"
            )
            s.get(Operator, operator_id).must_change_password = False  # type: ignore[union-attr]
        self.secrets[operator_id] = creds.totp_secret
        self.passwords[operator_id] = creds.password

    def client(self) -> TestClient:
        c = TestClient(self.reg.app, base_url="https://testserver", follow_redirects=False)
        return c

    def sign_in(self, operator_id: str, code: str | None = None, step: int = 0) -> TestClient:
        c = self.client()
        r = c.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
        code = code or ops.totp(self.secrets[operator_id], step_offset=step)
        r = c.post(
            "/console/login",
            data={
                "operator": operator_id,
                "password": self.passwords[operator_id],
                "code": code,
                "csrf": csrf,
            },
        )
        assert r.status_code == 303, r.text
        return c


def csrf_of(c: TestClient, path: str) -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]


def obama(reg: Registry, name: str, template, photo, **kw):  # type: ignore[no-untyped-def]
    return reg.packet([template(name)], photo(name), fingerprints=fingers(OBAMA), **kw)


def near_match(c: Console, template, photo, **kw) -> object:  # type: ignore[no-untyped-def]
    """Enrol Obama, then Obama again: an adjudication case (the target FPIR is unreachable)."""
    first = c.reg.submit(obama(c.reg, "obama__obama.jpg", template, photo))
    assert first.json()["status"] == "issued"
    packet = obama(c.reg, "obama__obama3.jpg", template, photo, **kw)
    r = c.reg.submit(packet)
    assert r.json()["status"] == "adjudication"
    return packet


def test_sign_in_needs_password_and_a_fresh_code_and_locks_out(console: Console) -> None:
    console.add("adj.one", "adjudicator")
    with console.registry.sessions() as s:
        assert s.get(Operator, "adj.one").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    c = console.client()
    r = c.get("/console/cases")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    # the right password with a wrong code, then a code used twice: refused alike
    csrf = csrf_of(c, "/console/login")
    form = {"operator": "adj.one", "password": "a long password 1", "csrf": csrf}
    r = c.post("/console/login", data={**form, "code": "000000"})
    assert r.status_code == 401 and "Wrong account, password or code" in r.text
    # the code signed in with is replayed as it was (computing it again could cross a 30 s step)
    used = ops.totp(console.secrets["adj.one"])
    signed = console.sign_in("adj.one", code=used)
    assert signed.get("/console/cases").status_code == 200
    csrf = csrf_of(c, "/console/login")
    r = c.post("/console/login", data={**form, "csrf": csrf, "code": used})
    assert r.status_code == 401  # replayed
    # a session cookie is HttpOnly, Secure, SameSite=Strict
    c2 = console.client()
    csrf = csrf_of(c2, "/console/login")
    r = c2.post(
        "/console/login",
        data={**form, "csrf": csrf, "code": ops.totp(console.secrets["adj.one"], step_offset=1)},
    )
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    # five failures lock the account, even for the right code
    for _ in range(ops.MAX_FAILURES):
        csrf = csrf_of(c, "/console/login")
        c.post("/console/login", data={**form, "csrf": csrf, "code": "111111"})
    with pytest.raises(AssertionError):
        console.sign_in("adj.one", step=-1)
    # the form's CSRF token is checked at sign-in too
    r = console.client().post("/console/login", data={**form, "code": "123456", "csrf": "x"})
    assert r.status_code == 200 and "expired" in r.text


def test_roles_csrf_and_idle_sessions(console: Console) -> None:
    console.add("adj.one", "adjudicator")
    console.add("admin", "registrar_admin")
    console.add("audit", "auditor")
    adj = console.sign_in("adj.one")
    for path in ("/console/operators", "/console/kiosks", "/console/audit"):
        assert adj.get(path).status_code == 403, path
    admin = console.sign_in("admin")
    for path in ("/console/cases", "/console/lookup"):
        assert admin.get(path).status_code == 403, path
    auditor = console.sign_in("audit")
    assert auditor.get("/console/audit").status_code == 200
    assert auditor.get("/console/fraud").status_code == 200
    assert auditor.get("/console/cases").status_code == 403
    # a form without this session's CSRF token is refused
    r = admin.post(
        "/console/operators", data={"operator_id": "x1", "role": "auditor", "csrf": "no"}
    )
    assert r.status_code == 403
    csrf = csrf_of(admin, "/console/operators")
    r = admin.post(
        "/console/operators", data={"operator_id": "adj.two", "role": "adjudicator", "csrf": csrf}
    )
    assert r.status_code == 200 and "shown once" in r.text
    # disabling ends the operator's sessions at once
    csrf = csrf_of(admin, "/console/operators")
    r = admin.post("/console/operators/adj.one/disable", data={"reason": "left", "csrf": csrf})
    assert r.status_code == 303
    assert adj.get("/console/").status_code == 303
    # an idle session ends
    with transaction(console.registry.sessions) as s:
        for row in s.scalars(select(ConsoleSession)):
            row.last_seen_at = row.last_seen_at.replace(year=2020)
    assert auditor.get("/console/audit").status_code == 303


def test_a_case_decided_both_ways_with_four_eyes(console: Console, template, photo) -> None:
    console.add("adj.one", "adjudicator")
    console.add("adj.two", "adjudicator")
    console.add("senior", "senior_adjudicator")
    packet = near_match(
        console,
        template,
        photo,
        demographics=demographics(surname_latin="Benali", date_of_birth=date(1990, 1, 2)),
    )
    a, b = console.sign_in("adj.one"), console.sign_in("adj.two")
    with console.registry.sessions() as s:
        case_id = s.scalars(select(AdjudicationCase.id)).one()
    # one adjudicator at a time: B can neither take nor open A's case
    csrf = csrf_of(a, "/console/cases")
    assert a.post(f"/console/cases/{case_id}/claim", data={"csrf": csrf}).status_code == 303
    page = a.get(f"/console/cases/{case_id}")
    assert page.status_code == 200 and "Benali" in page.text and "differs" in page.text
    assert page.headers["cache-control"].startswith("no-store")
    csrf_b = csrf_of(b, "/console/cases")
    assert b.post(f"/console/cases/{case_id}/claim", data={"csrf": csrf_b}).status_code == 409
    assert b.get(f"/console/cases/{case_id}").status_code == 409
    # images: only this session, never cached, watermarked PNGs
    links = re.findall(r'src="(/console/img/[^"]+)"', page.text)
    assert len(links) >= 3  # two faces and the compared fingers
    for link in links[:3]:
        img = a.get(link)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.headers["cache-control"] == "no-store, max-age=0"
        assert b.get(link).status_code == 403
    # the machine leans "different persons" here (a huge duplicate threshold): "same person"
    # goes against it and waits for a senior's second eye
    r = a.post(
        f"/console/cases/{case_id}/decide",
        data={
            "csrf": csrf,
            "decision": "same_person",
            "reason_code": "identity_fraud",
            "note": NOTE,
        },
    )
    assert r.status_code == 303 and "second" in r.headers["location"]
    assert console.reg.get(packet.packet_id).json()["status"] == "adjudication"
    # an adjudicator is not a second eye, nor is the first eye (below, a senior's own case)
    csrf = csrf_of(a, "/console/cases")
    assert a.post(f"/console/cases/{case_id}/claim", data={"csrf": csrf}).status_code == 409
    assert "second_review" not in a.get("/console/cases").text
    r = b.post(
        f"/console/cases/{case_id}/review",
        data={"csrf": csrf_b, "verdict": "confirm", "reason_code": "evidence_confirms"},
    )
    assert r.status_code == 403
    senior = console.sign_in("senior")
    csrf_s = csrf_of(senior, "/console/cases")
    assert senior.post(f"/console/cases/{case_id}/claim", data={"csrf": csrf_s}).status_code == 303
    assert NOTE in senior.get(f"/console/cases/{case_id}").text  # decrypted for the second eye
    r = senior.post(
        f"/console/cases/{case_id}/review",
        data={"csrf": csrf_s, "verdict": "confirm", "reason_code": "evidence_confirms"},
    )
    assert r.status_code == 303
    st = console.reg.get(packet.packet_id).json()
    assert st["status"] == "duplicate" and st["idcs"] is None
    with console.registry.sessions() as s:
        flag = s.scalars(select(FraudFlag)).one()
        assert set(flag.differences.split(",")) == {"surname_latin", "date_of_birth"}
        decisions = list(s.scalars(select(AdjudicationDecision).order_by(AdjudicationDecision.id)))
        assert [(d.operator_id, d.stage) for d in decisions] == [
            ("adj.one", "first"),
            ("senior", "second"),
        ]
        assert decisions[0].note is not None and NOTE.encode() not in decisions[0].note  # encrypted
    # a second case, decided "different persons" with the machine: the IDCS is issued
    r = console.reg.submit(obama(console.reg, "obama__obama2.jpg", template, photo))
    assert r.json()["status"] == "adjudication"
    csrf_b = csrf_of(b, "/console/cases")
    r = b.post("/console/cases/next", data={"csrf": csrf_b})
    case2 = int(r.headers["location"].rsplit("/", 1)[1])
    assert case2 != case_id and b.get(f"/console/cases/{case2}").status_code == 200
    r = b.post(
        f"/console/cases/{case2}/decide",
        data={
            "csrf": csrf_b,
            "decision": "different_persons",
            "reason_code": "fingerprints_differ",
        },
    )
    assert r.status_code == 303 and "in+effect" in r.headers["location"]
    st = console.reg.get(_packet_of(console, case2)).json()
    assert st["status"] == "issued" and re.fullmatch(r"[0-9]{10}", st["idcs"])
    # a senior decides a third case against the machine: they cannot be its second eye
    r = console.reg.submit(obama(console.reg, "obama__obama4.jpg", template, photo))
    assert r.json()["status"] == "adjudication"
    r = senior.post("/console/cases/next", data={"csrf": csrf_s})
    case3 = int(r.headers["location"].rsplit("/", 1)[1])
    senior.get(f"/console/cases/{case3}")
    r = senior.post(
        f"/console/cases/{case3}/decide",
        data={"csrf": csrf_s, "decision": "same_person", "reason_code": "biometrics_match"},
    )
    assert "second" in r.headers["location"]
    assert senior.post(f"/console/cases/{case3}/claim", data={"csrf": csrf_s}).status_code == 409
    queue = senior.get("/console/cases?status=second_review").text
    assert f"#{case3}" not in queue
    with transaction(console.registry.sessions) as s:  # even holding it, the review is refused
        s.get(AdjudicationCase, case3).claimed_by = "senior"  # type: ignore[union-attr]
        s.get(AdjudicationCase, case3).claim_until = datetime.now(UTC) + timedelta(minutes=5)  # type: ignore[union-attr]
    r = senior.post(
        f"/console/cases/{case3}/review",
        data={"csrf": csrf_s, "verdict": "confirm", "reason_code": "evidence_confirms"},
    )
    assert r.status_code == 409 and "another adjudicator" in r.text
    # the dashboard's numbers, as Prometheus reads them: one of two closed against the machine
    text = console.reg.client.get(
        "/v1/metrics", headers={"Authorization": f"Bearer {METRICS}"}
    ).text
    for line in (
        'rnp_adjudication_closed{decision="different_persons"} 1',
        'rnp_adjudication_closed{decision="same_person"} 1',
        "rnp_adjudication_overturned_ratio 0.5",
        'rnp_adjudication_cases{status="second_review"} 1',
        'rnp_adjudication_operator_decisions_7d{operator="senior"} 2',
    ):
        assert line in text, line
    dashboard = b.get("/console/")
    assert dashboard.status_code == 200 and "machine leanings overturned (1)" in dashboard.text


def _packet_of(console: Console, case_id: int) -> object:
    with console.registry.sessions() as s:
        case = s.get(AdjudicationCase, case_id)
        return s.get(Enrolment, case.enrolment_id).packet_id  # type: ignore[union-attr]


def test_more_information_reaches_the_kiosk_and_lookups_need_a_reason(
    console: Console, template, photo
) -> None:
    console.add("adj.one", "adjudicator")
    packet = near_match(console, template, photo)
    a = console.sign_in("adj.one")
    csrf = csrf_of(a, "/console/cases")
    case_id = int(
        a.post("/console/cases/next", data={"csrf": csrf}).headers["location"].rsplit("/", 1)[1]
    )
    a.get(f"/console/cases/{case_id}")
    r = a.post(
        f"/console/cases/{case_id}/decide",
        data={"csrf": csrf, "decision": "more_information", "reason_code": "faces_differ"},
    )
    assert r.status_code == 422  # a reason that does not go with the decision
    r = a.post(
        f"/console/cases/{case_id}/decide",
        data={"csrf": csrf, "decision": "more_information", "reason_code": "interview_needed"},
    )
    assert r.status_code == 303
    st = console.reg.get(packet.packet_id).json()
    assert st["status"] == "more_information" and "come back" in st["message"]
    # look-ups: a reason is required; every look-up writes an audit row, found or not
    receipt = st["receipt_number"]
    r = a.post("/console/lookup", data={"csrf": csrf, "kind": "receipt", "value": receipt})
    assert r.status_code == 422
    r = a.post(
        "/console/lookup",
        data={"csrf": csrf, "kind": "name", "value": "Obama", "reason": "adjudication"},
    )
    assert r.status_code == 422  # never by name
    r = a.post(
        "/console/lookup",
        data={"csrf": csrf, "kind": "receipt", "value": receipt, "reason": "citizen_at_counter"},
    )
    assert r.status_code == 200 and receipt in r.text and "El Amrani" in r.text
    with console.registry.sessions() as s:
        rows = list(
            s.scalars(
                select(AuditEvent).where(AuditEvent.actor == "adj.one").order_by(AuditEvent.seq)
            )
        )
    actions = [e.action for e in rows]
    assert actions.count("person.looked_up") == 1 and "case.viewed" in actions
    looked = next(e for e in rows if e.action == "person.looked_up")
    assert looked.details["reason"] == "citizen_at_counter" and receipt not in str(looked.details)


def test_different_persons_finds_someone_enrolled_since(console: Console, template, photo) -> None:
    """The case was opened against Obama; meanwhile a person with the same fingers was
    issued (another process's decision): "different persons" does not issue a second IDCS,
    the case comes back with the newcomer."""
    console.add("adj.one", "adjudicator")
    near_match(console, template, photo)
    a = console.sign_in("adj.one")
    csrf = csrf_of(a, "/console/cases")
    case_id = int(
        a.post("/console/cases/next", data={"csrf": csrf}).headers["location"].rsplit("/", 1)[1]
    )
    # someone enrolled since, with the probe's fingers (and face): forced in as a person
    reg = console.registry
    with transaction(reg.sessions) as s:
        case = s.get(AdjudicationCase, case_id)
        faces, prints = probe_templates(s, reg.cipher, case)  # type: ignore[arg-type]
        person = issue_person(s, reg.settings.idcs_policy(), "test")
        e = s.get(Enrolment, case.enrolment_id)  # type: ignore[union-attr]
        s.add(
            FaceReference(
                person_id=person.id,
                enrolment_id=e.id,  # type: ignore[union-attr]
                algorithm=face.ALGORITHM,
                template=reg.cipher.encrypt(face.template_to_bytes(faces), face_context(person.id)),
            )
        )
        s.add_all(finger_reference(reg.cipher, person.id, e.id, t) for t in prints.values())  # type: ignore[union-attr]
        newcomer = person.id
    a.get(f"/console/cases/{case_id}")
    r = a.post(
        f"/console/cases/{case_id}/decide",
        data={"csrf": csrf, "decision": "different_persons", "reason_code": "faces_differ"},
    )
    assert r.status_code == 303 and "back+in+the+queue" in r.headers["location"]
    with reg.sessions() as s:
        case = s.get(AdjudicationCase, case_id)
        assert case.status == "open" and case.candidate_person_id == newcomer  # type: ignore[union-attr]


def test_cli_bootstraps_the_first_admin(db_url: str) -> None:
    env = registry_env(db_url)
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning"]
    out = subprocess.run(
        [*cmd, "operator-add", "root", "--role", "registrar_admin", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    creds = json.loads(out.stdout)
    code = subprocess.run(
        [*cmd, "totp-code", creds["totp_secret"]],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert code == ops.totp(ops.secret_from_base32(creds["totp_secret"]))
    dup = subprocess.run(
        [*cmd, "operator-add", "root", "--role", "auditor"], env=env, capture_output=True, text=True
    )
    assert dup.returncode == 2 and "exists" in dup.stderr
    subprocess.run(
        [*cmd, "operator-disable", "root", "--reason", "test"],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*cmd, "operator-reset", "root", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert json.loads(out.stdout)["totp_secret"] != creds["totp_secret"]


def test_kiosk_operators_are_managed_centrally_and_synced_signed(
    console: Console, tmp_path: Path
) -> None:
    """The registrar adds an agent in the console; the kiosk installs the signed list and
    checks the PIN offline; a disabled agent is gone at the next sync; a list altered, for
    another kiosk, or older than the installed one is refused."""
    console.add("admin", "registrar_admin")
    admin = console.sign_in("admin")
    kiosk_id = console.reg.kiosk.kiosk_id
    operators = Operators(tmp_path / "operators.json", tmp_path, kiosk_id=kiosk_id)
    operators.add("local-boot", "supervisor", "9999")  # a bootstrap before the first sync

    def fetch() -> OperatorList:
        r = console.reg.read("/v1/kiosk/operators")
        assert r.status_code == 200, r.text
        return OperatorList.model_validate_json(r.content)

    empty = fetch()
    assert empty.version == 0 and not operators.install(empty, SIGNING_PUB)  # keeps bootstrap
    csrf = csrf_of(admin, "/console/kiosk-operators")
    r = admin.post(
        "/console/kiosk-operators",
        data={"csrf": csrf, "operator_id": "agent.fes", "role": "operator", "kiosks": kiosk_id},
    )
    pin = re.search(r'id="new-pin">([0-9]{6})<', r.text).group(1)  # type: ignore[union-attr]
    admin.post(
        "/console/kiosk-operators",
        data={"csrf": csrf, "operator_id": "agent.rabat", "role": "operator", "kiosks": "K-OTHER"},
    )
    first = fetch()
    assert [o.id for o in first.operators] == ["agent.fes"]  # not the other kiosk's agent
    assert operators.install(first, SIGNING_PUB)
    assert operators.authenticate("agent.fes", pin, "operator") == "operator"
    with pytest.raises(StepError):
        operators.authenticate("local-boot", "9999", "operator")  # replaced by the registry's
    # tampered, another kiosk's, or signed by someone else: refused
    forged = first.model_copy(
        update={"operators": [first.operators[0].model_copy(update={"role": "supervisor"})]}
    )
    with pytest.raises(DecisionNotAuthentic):
        operators.install(forged, SIGNING_PUB)
    with pytest.raises(DecisionNotAuthentic):
        operators.install(first.model_copy(update={"kiosk_id": "K-OTHER"}), SIGNING_PUB)
    # disabled: gone at the next sync; the older list cannot be installed again
    r = admin.post(
        "/console/kiosk-operators/agent.fes/disable", data={"csrf": csrf, "reason": "left"}
    )
    assert r.status_code == 303
    second = fetch()
    assert second.version > first.version and second.operators == []
    assert operators.install(second, SIGNING_PUB)
    assert not operators.install(first, SIGNING_PUB)  # no rollback
    with pytest.raises(StepError):
        operators.authenticate("agent.fes", pin, "operator")
    # a technician's PIN opens the technician page, and authorises nothing of an enrolment
    r = admin.post(
        "/console/kiosk-operators",
        data={"csrf": csrf, "operator_id": "tech.fes", "role": "technician", "kiosks": kiosk_id},
    )
    tech_pin = re.search(r'id="new-pin">([0-9]{6})<', r.text).group(1)  # type: ignore[union-attr]
    third = fetch()
    assert [(o.id, o.role) for o in third.operators] == [("tech.fes", "technician")]
    assert operators.install(third, SIGNING_PUB)
    assert operators.authenticate("tech.fes", tech_pin, "technician") == "technician"
    with pytest.raises(StepError) as err:
        operators.authenticate("tech.fes", tech_pin, "operator")
    assert err.value.code == "agent_needed"
    # only a registered, active kiosk reads a list
    stranger = KioskIdentity.generate("K-STRANGER")
    assert console.reg.read("/v1/kiosk/operators", signer=stranger).status_code == 401


def test_an_image_that_cannot_be_decoded_is_a_clear_404_not_a_crash() -> None:
    from central_api.console import images

    with pytest.raises(images.ImageUnreadable) as caught:
        images.face_png(b"\xff\xd8 not a jpeg", "adj 2026-11-29")
    assert caught.value.status_code == 404 and "cannot be decoded" in str(caught.value)


def test_the_case_page_groups_the_kiosk_agents_overrides() -> None:
    """Ten fingers excepted by one agent for one reason are one line naming the ten."""
    from central_api.adjudication.service import grouped_overrides
    from central_api.enrolment.schemas import Override

    at = datetime.now(UTC)
    bandaged = [
        Override(
            operator_id="op-01",
            role="operator",
            action="finger_exception",
            subject=str(p),
            reason="bandaged",
            at=at,
        )
        for p in (1, 2, 3)
    ]
    other = Override(
        operator_id="sup-01", role="supervisor", action="face_retry", reason="glasses", at=at
    )
    lines = grouped_overrides(capture(overrides=[*bandaged, other]))
    assert lines == [
        {
            "operator": "op-01",
            "role": "operator",
            "action": "finger_exception",
            "subject": "1, 2, 3",
            "reason": "bandaged",
        },
        {
            "operator": "sup-01",
            "role": "supervisor",
            "action": "face_retry",
            "subject": None,
            "reason": "glasses",
        },
    ]


def test_a_duplicate_citizen_is_shown_their_idcs_after_a_live_face_match(
    registry: Registry, template, photo
) -> None:  # type: ignore[no-untyped-def]
    """The kiosk asks, sealed, about its duplicate enrolment: the registered person's face
    gets the IDCS (signed), another face a mismatch, three mismatches end it; a replayed
    envelope, another kiosk's packet, an issued enrolment or a face without liveness do not."""
    first = registry.submit(obama(registry, "obama__obama.jpg", template, photo)).json()
    dup_packet = obama(registry, "obama__obama3.jpg", template, photo)
    assert registry.submit(dup_packet).json()["status"] == "duplicate"

    def ask(name: str, packet_id: object = dup_packet.packet_id, live: bool = True, sealed=None):  # type: ignore[no-untyped-def]
        req = RevealRequest(
            kiosk_id=registry.kiosk.kiosk_id,
            packet_id=packet_id,
            face_template=[float(v) for v in template(name)],
            face_liveness=live,
            face_quality=80,
            operator_id="op-01",
        )
        body = sealed or registry.kiosk.seal(req.model_dump_json().encode(), PACKET_PUB)
        r = registry.client.post(
            "/v1/kiosk/reveal",
            content=body,
            headers={"content-type": "application/json", "x-kiosk-id": registry.kiosk.kiosk_id},
        )
        return r, body

    r, body = ask("obama__obama2.jpg")
    assert r.status_code == 200, r.text
    answer = RevealAnswer.model_validate(r.json()).verify(
        SIGNING_PUB, registry.kiosk.kiosk_id, dup_packet.packet_id
    )
    assert answer.outcome == "shown" and answer.idcs == first["idcs"]
    assert ask("obama__obama2.jpg", sealed=body)[0].json()["code"] == "replay"
    assert ask("obama__obama2.jpg", live=False)[0].status_code == 422
    assert ask("obama__obama2.jpg", packet_id=first["packet_id"])[0].status_code == 404
    for left in (2, 1, 0):
        r, _ = ask("biden__biden.jpg")
        assert r.json()["outcome"] == "mismatch" and r.json()["idcs"] is None
        assert r.json()["attempts_left"] == left
    r, _ = ask("obama__obama2.jpg")  # too many mismatches: even the right face is refused
    assert r.json()["outcome"] == "refused" and r.json()["idcs"] is None
    with registry.app.state.registry.sessions() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action.like("idcs.reveal%"))))
    assert [e.action for e in rows] == ["idcs.revealed"] + ["idcs.reveal_mismatch"] * 3 + [
        "idcs.reveal_refused"
    ]
    assert all(first["idcs"] not in str(e.details) for e in rows)


def test_kiosk_questions_witnesses_and_receipts_answer_nothing_more(
    registry: Registry, template, photo
) -> None:  # type: ignore[no-untyped-def]
    """A kiosk asks, sealed, whether two witnesses are registered (only for the pair), and a
    citizen checks a receipt with their date of birth: the state and the IDCS's last four
    digits, ``not_found`` for a wrong date or number alike, ``refused`` after five wrong
    dates; each answer is signed for its question, audited, and never replayable."""
    first = registry.submit(obama(registry, "obama__obama.jpg", template, photo)).json()
    packet = registry.packet(
        [template("biden__biden.jpg")], photo("biden__biden.jpg"), fingerprints=fingers(77)
    )
    second = registry.submit(packet).json()
    assert first["status"] == second["status"] == "issued"
    kiosk = registry.kiosk.kiosk_id

    def ask(query, sealed=None):  # type: ignore[no-untyped-def]
        body = sealed or registry.kiosk.seal(query.model_dump_json().encode(), PACKET_PUB)
        r = registry.client.post(
            "/v1/kiosk/query",
            content=body,
            headers={"content-type": "application/json", "x-kiosk-id": kiosk},
        )
        return r, body

    def witnesses(*idcs: str) -> WitnessQuery:
        return WitnessQuery(
            query_id=uuid.uuid4(), kiosk_id=kiosk, witnesses=list(idcs), operator_id="sup-01"
        )

    def receipt(number: str, born: date) -> ReceiptQuery:
        return ReceiptQuery(
            query_id=uuid.uuid4(), kiosk_id=kiosk, receipt_number=number, date_of_birth=born
        )

    q = witnesses(first["idcs"], second["idcs"])
    r, body = ask(q)
    assert r.status_code == 200, r.text
    answer = QueryAnswer.model_validate(r.json()).verify(SIGNING_PUB, kiosk, q.query_id)
    assert answer.outcome == "registered"
    with pytest.raises(DecisionNotAuthentic):  # an answer to another question is not taken
        QueryAnswer.model_validate(r.json()).verify(SIGNING_PUB, kiosk, uuid.uuid4())
    assert ask(q, sealed=body)[0].json()["code"] == "replay"
    unknown = "1234567890"
    r, _ = ask(witnesses(first["idcs"], unknown))
    assert r.json()["outcome"] == "not_registered" and unknown not in r.text
    born = date(1988, 4, 12)  # helpers.demographics()
    r, _ = ask(receipt(first["receipt_number"], born))
    found = r.json()
    assert found["outcome"] == "found" and found["status"] == "issued"
    assert found["idcs_last4"] == first["idcs"][-4:] and first["idcs"] not in r.text
    for _ in range(5):  # a wrong date answers as a wrong number would
        assert ask(receipt(second["receipt_number"], date(1990, 1, 1)))[0].json()["outcome"] == (
            "not_found"
        )
    r, _ = ask(receipt(second["receipt_number"], born))  # even the right date, now
    assert r.json()["outcome"] == "refused" and r.json()["status"] is None
    with registry.app.state.registry.sessions() as s:
        actions = [
            e.action
            for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
            if e.action.startswith(("witness.", "receipt."))
        ]
        texts = [str(e.details) for e in s.scalars(select(AuditEvent))]
    assert actions == ["witness.checked", "witness.check_failed", "receipt.lookup"] + [
        "receipt.lookup_failed"
    ] * 5 + ["receipt.lookup_refused"]
    assert not any(second["receipt_number"] in t or first["idcs"] in t for t in texts)
