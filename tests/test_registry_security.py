"""The registry under attack (issue 11): forged answers, capture evidence, image bombs,
backpressure, the audit trail, revoked kiosks, oracles, out-of-range values, what is public."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from helpers import (
    PACKET_PUB,
    REGISTRY_ENV,
    SIGNING_KEY,
    SIGNING_PUB,
    Registry,
    capture,
    count,
    demographics,
    fingers,
    register_kiosk,
    registry_sessions,
)
from PIL import Image
from sqlalchemy import create_engine, text

from biometrics.fingerprint import FingerPosition
from central_api.audit.service import chain_key, checkpoint, verify
from central_api.db import transaction
from central_api.enrolment.schemas import EnrolmentStatus, Override, seal, verify_status
from kiosk.client import KioskIdentity

KEY = base64.b64decode(REGISTRY_ENV["CENTRAL_DATA_KEY"])


def code(r) -> str:  # type: ignore[no-untyped-def]
    return str(r.json()["code"])


# ---------------------------------------------------------------------------- signed answers
def test_every_status_answer_is_signed_by_the_registry(registry: Registry, template, photo):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    for r in (registry.submit(packet), registry.get(packet.packet_id)):
        st = EnrolmentStatus.model_validate(r.json())
        verify_status(st, SIGNING_PUB, registry.kiosk.kiosk_id, packet.packet_id)
        forged = st.model_copy(update={"idcs": "2345678901"})  # an IDCS changed in transit
        with pytest.raises(ValueError, match="not signed"):
            verify_status(forged, SIGNING_PUB, registry.kiosk.kiosk_id, packet.packet_id)
        with pytest.raises(ValueError, match="another packet"):
            verify_status(st, SIGNING_PUB, registry.kiosk.kiosk_id, uuid.uuid4())


# ---------------------------------------------------------------------------- intake policy
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"capture": None}, "capture_missing"),
        ({"capture": capture(face_liveness=False)}, "liveness_not_passed"),
        ({"capture": capture(passive_authentication="invalid")}, "passive_authentication_invalid"),
        ({"capture": capture(passive_authentication="unknown_csca")}, "unknown_csca"),
        ({"capture": capture(face_quality=0)}, "face_quality_low"),
        ({"capture": capture(face_document_similarity=0.5)}, "face_document_score_low"),
        ({"capture": capture(face_document_similarity=None)}, "face_document_score_missing"),
        ({"capture": capture(active_authentication="failed")}, "active_authentication_failed"),
        ({"fingerprints": fingers()[:9]}, "fingers_unaccounted"),
    ],
)
def test_capture_evidence_below_the_policy_is_refused_with_a_reason(
    registry: Registry, db_url: str, template, photo, change, reason
):
    packet = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"), **change)
    r = registry.submit(packet)
    assert r.status_code == 422 and code(r) == "capture_policy", r.text
    assert r.json()["retryable"] is False
    assert any(reason in x for x in r.json()["reasons"]), r.json()
    assert count(db_url, "enrolments") == 0


@pytest.mark.parametrize(
    ("required", "chip", "active", "short"),
    [
        ("off", None, None, False),  # an older kiosk's packet: no record, nothing required
        ("either", "not_supported", "passed", False),
        ("either", "passed", "not_supported", False),
        ("either", "not_supported", "unknown", True),
        ("chip", "not_supported", "passed", True),
        ("chip", "passed", "unknown", False),
        ("active", "passed", "not_supported", True),
        ("off", "passed", "failed", True),  # a chip that failed to sign: a copy, always
    ],
)
def test_the_policy_can_require_a_genuine_chip(required, chip, active, short):
    from central_api.config import Settings
    from central_api.enrolment.policy import evidence_shortfalls
    from central_api.enrolment.schemas import EnrolmentPacket

    cap = capture(
        access_control="PACE-ECDH-GM-AES-128",
        chip_authentication=chip,
        active_authentication=active,
    )
    packet = EnrolmentPacket.model_construct(capture=cap, fingerprints=fingers())
    reasons = evidence_shortfalls(packet, Settings(intake_chip_authenticity=required))
    assert bool(reasons) == short, reasons
    assert not short or reasons[0].startswith(("chip_authenticity", "active_authentication"))


def test_a_supervisor_override_is_evidence_the_policy_accepts(registry: Registry, template, photo):
    def sup(action: str) -> Override:
        return Override(
            operator_id="sup-01", role="supervisor", action=action, reason="checked", at=_now()
        )

    packet = registry.packet(
        [template("biden__biden.jpg")],
        photo("biden__biden.jpg"),
        capture=capture(
            passive_authentication="unknown_csca",
            face_document_similarity=0.5,
            overrides=[sup("document_not_verified"), sup("face_document_mismatch")],
        ),
    )
    assert registry.submit(packet).json()["status"] == "issued"
    # an operator is not a supervisor, and an invalid chip is never overridden
    for cap in (
        capture(
            passive_authentication="unknown_csca",
            overrides=[sup("document_not_verified").model_copy(update={"role": "operator"})],
        ),
        capture(passive_authentication="invalid", overrides=[sup("document_not_verified")]),
    ):
        p = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"), capture=cap)
        assert code(registry.submit(p)) == "capture_policy"


def _now():  # type: ignore[no-untyped-def]
    return datetime.now(UTC)


def test_templates_must_be_iso_records_and_the_face_of_the_photo(
    registry: Registry, db_url: str, template, photo
):
    jpeg = photo("biden__biden.jpg")
    bad = [f.model_copy(update={"data": b"\x00" * 40}) for f in fingers()]
    r = registry.submit(registry.packet([template("biden__biden.jpg")], jpeg, fingerprints=bad))
    assert code(r) == "capture_policy" and r.json()["reasons"] == ["finger_template_invalid"]
    swapped = [
        f.model_copy(update={"position": FingerPosition(11 - f.position)}) for f in fingers()
    ]
    r = registry.submit(registry.packet([template("biden__biden.jpg")], jpeg, fingerprints=swapped))
    assert r.json()["reasons"] == ["finger_template_invalid"]  # a record of another finger
    assert count(db_url, "enrolments") == 0
    # a tampered kiosk plants another person's template beside this person's photo: the dedup
    # worker encodes the photo itself first, and rejects the packet instead of searching it
    planted = registry.packet([template("obama__obama.jpg")], jpeg)
    both = registry.packet([template("biden__biden.jpg"), template("obama__obama.jpg")], jpeg)
    for p in (planted, both):
        r = registry.submit(p)
        assert r.json()["status"] == "rejected", r.text
        assert r.json()["reason"] == "face_template_mismatch"
    st = EnrolmentStatus.model_validate(registry.get(planted.packet_id).json())
    verify_status(st, SIGNING_PUB, registry.kiosk.kiosk_id, planted.packet_id)  # reason signed
    assert count(db_url, "persons") == 0 and count(db_url, "face_references") == 0


def test_policy_adjudicate_stores_a_weak_packet_but_never_issues_it(
    registry_factory, db_url: str, template, photo
):
    reg: Registry = registry_factory(intake_on_violation="adjudicate")
    weak = reg.packet(
        [template("biden__biden.jpg")],
        photo("biden__biden.jpg"),
        capture=capture(face_liveness=False),
    )
    r = reg.submit(weak)
    assert r.status_code == 201 and r.json()["status"] == "adjudication"
    assert r.json()["idcs"] is None and count(db_url, "persons") == 0
    reasons = count(db_url, "adjudication_cases", "reason = 'policy:liveness_not_passed'")
    assert reasons == 1
    # data the registry cannot trust is rejected whatever the policy
    swapped = reg.packet([template("obama__obama.jpg")], photo("biden__biden.jpg"))
    assert reg.submit(swapped).json()["reason"] == "face_template_mismatch"


# ---------------------------------------------------------------------------- bad values
def test_absurd_send_times_and_templates_are_a_clear_4xx(registry: Registry, template, photo):
    packet = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    body = packet.model_dump_json().encode()
    for sent_at in (10**12, 10**20, -(10**20)):
        r = registry.post(body, sent_at=sent_at)
        assert r.status_code in (409, 422), r.text
    d = json.loads(body)
    d["face_templates"][0][7] = 1e39  # overflows float32
    r = registry.post(json.dumps(d).encode())
    assert r.status_code == 422 and code(r) == "invalid_packet"


def _j2k_bomb(side: int = 4096) -> bytes:
    """A tiny JPEG 2000 file whose header declares a ``side`` x ``side`` image."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, "JPEG2000", irreversible=True, quality_layers=[400])
    return buf.getvalue()


def test_an_image_bomb_is_refused_from_its_header_before_decoding(
    registry: Registry, template, photo, monkeypatch
):
    bomb = _j2k_bomb()
    assert len(bomb) < 4000
    d = json.loads(
        registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")).model_dump_json()
    )
    d["face_image"] = base64.b64encode(bomb).decode()
    decoded: list[object] = []
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(
        ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self)
    )
    started = time.perf_counter()
    r = registry.post(json.dumps(d).encode())
    elapsed = time.perf_counter() - started
    assert r.status_code == 422 and "token image" in r.text, r.text
    assert decoded == []  # not one pixel was decoded
    assert elapsed < 0.5  # (decoding it costs about 0.6 s of CPU)


# ---------------------------------------------------------------------------- backpressure
def test_a_full_queue_answers_503_with_retry_after_and_a_metric(registry_factory, template, photo):
    reg: Registry = registry_factory(
        start_worker=False, sync_wait_seconds=0, max_queue_depth=2, metrics_token="s3cret"
    )
    app = reg.app.state.registry
    app.queue._ttl = 0  # read the depth on every request (the production cache is 1 s)
    names = ["biden__biden.jpg", "obama__obama.jpg", "tom_cruise__img1.jpg"]
    answers = [reg.submit(reg.packet([template(n)], photo(n))) for n in names]
    assert [a.status_code for a in answers] == [202, 202, 503]
    assert code(answers[2]) == "overloaded" and answers[2].json()["retryable"] is True
    assert int(answers[2].headers["retry-after"]) > 0
    page = reg.client.get("/v1/metrics", headers={"authorization": "Bearer s3cret"})
    assert page.status_code == 200
    assert "rnp_dedup_queue_depth 2" in page.text and "rnp_dedup_queue_limit 2" in page.text
    assert 'rnp_intake_answers_total{code="overloaded"} 1' in page.text


# ---------------------------------------------------------------------------- what is public
def test_health_says_only_up_and_metrics_and_docs_are_not_public(registry_factory, template, photo):
    reg: Registry = registry_factory(metrics_token="s3cret")
    reg.submit(reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    assert reg.client.get("/v1/health").json() == {"status": "ok"}
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert reg.client.get(path).status_code == 404
    assert reg.client.get("/v1/metrics").status_code == 404
    bad = reg.client.get("/v1/metrics", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 404
    good = reg.client.get("/v1/metrics", headers={"authorization": "Bearer s3cret"})
    assert "rnp_persons 1" in good.text and "# TYPE rnp_enrolments gauge" in good.text
    assert registry_factory(expose_docs=True).client.get("/openapi.json").status_code == 200


# ---------------------------------------------------------------------------- kiosks
@pytest.mark.slow
def test_kiosks_are_listed_deactivated_and_rekeyed_from_the_command_line(
    registry: Registry, db_url: str, template, photo, tmp_path
):
    env = {**REGISTRY_ENV, "PATH": "/usr/bin:/bin", "CENTRAL_DATABASE_URL": db_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "central_api.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = json.loads(cli("kiosk-list").stdout)
    assert [(k["kiosk_id"], k["active"]) for k in listed] == [("KIOSK-FES-01", True)]
    p1 = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    assert registry.submit(p1).status_code == 201

    assert cli("kiosk-deactivate", "KIOSK-FES-01", "--reason", "stolen").returncode == 0
    p2 = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    r = registry.submit(p2)
    assert r.status_code == 403 and code(r) == "kiosk_deactivated"
    assert registry.get(p1.packet_id).status_code == 403

    new = KioskIdentity.generate("KIOSK-FES-01")
    out = cli("kiosk-rotate", "KIOSK-FES-01", "--public-key", new.public_key_b64())
    assert out.returncode == 0, out.stderr
    assert code(registry.submit(p2)) == "not_authenticated"  # the old key no longer works
    r = registry.post(p2.model_dump_json().encode(), signer=new)
    assert r.status_code == 201, r.text
    assert cli("kiosk-add", "KIOSK-FES-01", "--public-key", new.public_key_b64()).returncode == 2
    with registry_sessions(db_url) as factory, factory() as s:
        actions = s.execute(
            text("SELECT action FROM audit_events WHERE entity = 'kiosk' ORDER BY seq")
        ).scalars()
        assert list(actions) == ["kiosk.registered", "kiosk.deactivated", "kiosk.rotated"]


# ---------------------------------------------------------------------------- oracles
def test_witness_checks_answer_for_the_pair_only_are_audited_and_limited(
    registry_factory, db_url: str, template, photo
):
    reg: Registry = registry_factory(witness_failures_per_hour=3)
    known = reg.submit(reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    idcs = known.json()["idcs"]
    witnessed = capture(
        document_source="witnesses",
        passive_authentication=None,
        face_document_similarity=None,
        witnesses=[idcs, "2345678901"],
        overrides=[
            Override(
                operator_id="sup-01",
                role="supervisor",
                action="no_document",
                reason="witnesses",
                at=_now(),
            )
        ],
    )
    answers = []
    for other in ("2345678901", "3456789012", "4567890123", "5678901234"):
        cap = witnessed.model_copy(update={"witnesses": [idcs, other]})
        p = reg.packet(
            [template("obama__obama.jpg")],
            photo("obama__obama.jpg"),
            capture=cap,
            demographics=demographics(document=None),
        )
        answers.append(reg.submit(p))
    assert [a.status_code for a in answers] == [422, 422, 422, 429]
    assert {code(a) for a in answers[:3]} == {"witnesses_not_registered"}
    # the answer is about the pair: neither which one is unknown nor any IDCS is echoed
    assert len({a.text for a in answers[:3]}) == 1 and idcs not in answers[0].text
    with registry_sessions(db_url) as factory, factory() as s:
        refs = s.execute(
            text("SELECT details FROM audit_events WHERE action = 'witness.check_failed'")
        ).scalars()
        details = [json.loads(d) if isinstance(d, str) else d for d in refs]
    assert len(details) == 3 and all(len(d["refs"]) == 2 for d in details)
    assert idcs not in json.dumps(details)  # fingerprints of the IDCS, not the numbers


def test_a_kiosk_cannot_learn_whether_another_kiosk_used_a_packet_id(
    registry: Registry, db_url: str, template, photo
):
    mine = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    assert registry.submit(mine).status_code == 201
    other = KioskIdentity.generate("KIOSK-SALE-03")
    register_kiosk(db_url, other)
    theirs = mine.model_copy(update={"kiosk_id": other.kiosk_id})  # the same packet id
    r = registry.post(theirs.model_dump_json().encode(), signer=other)
    assert r.status_code == 201, r.text  # as for any fresh id: nothing tells it was taken
    assert r.json()["status"] == "duplicate"  # (the same person, found by the face)
    assert count(db_url, "enrolments") == 2  # two enrolments, one packet id, two kiosks


# ---------------------------------------------------------------------------- the audit trail
def _bypass_triggers(conn, url: str, on: bool) -> None:  # type: ignore[no-untyped-def]
    """What an intruder with the database owner's rights would do."""
    if url.startswith("sqlite"):
        if not on:
            for t in ("audit_events_no_update", "audit_events_no_delete"):
                conn.execute(text(f"DROP TRIGGER {t}"))
    else:
        verb = "ENABLE" if on else "DISABLE"
        conn.execute(text(f"ALTER TABLE audit_events {verb} TRIGGER USER"))


def test_the_audit_trail_is_append_only_and_every_change_is_found(
    registry: Registry, db_url: str, template, photo
):
    for name in ("biden__biden.jpg", "obama__obama.jpg", "obama__obama2.jpg"):
        registry.submit(registry.packet([template(name)], photo(name)))
    sessions = registry.app.state.registry.sessions
    with transaction(sessions) as s:
        assert checkpoint(s, SIGNING_KEY.sign) is not None
    key = chain_key(KEY)

    def report():  # type: ignore[no-untyped-def]
        with sessions() as s:
            return verify(s, key, SIGNING_PUB)

    clean = report()
    assert clean.ok and clean.rows >= 12 and clean.checkpoints == 1, clean.findings
    engine = create_engine(db_url)
    # the application's own connection cannot change or remove a row
    for sql in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    # an intruder past the triggers: each kind of change is found
    with engine.begin() as conn:
        _bypass_triggers(conn, db_url, on=False)
        conn.execute(text("UPDATE audit_events SET actor = 'cli:mallory' WHERE seq = 3"))
    assert [(f.seq, f.kind) for f in report().findings] == [(3, "row_altered")]
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'dedup' WHERE seq = 3"))
        actor = conn.execute(text("SELECT actor FROM audit_events WHERE seq = 4")).scalar()
        conn.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    kinds = {f.kind for f in report().findings}
    assert {"rows_missing", "chain_broken"} <= kinds
    assert not any(f.kind == "row_altered" and f.seq == 3 for f in report().findings)
    with engine.begin() as conn:
        last = conn.execute(text("SELECT max(seq), max(id) FROM audit_events")).one()
        conn.execute(
            text(
                "INSERT INTO audit_events (id, seq, at, actor, action, entity, entity_id, details,"
                " prev_mac, mac) VALUES (:id, :seq, :at, 'cli:mallory', 'person.deleted', "
                "'person', '1', '{}', :prev, :mac)"
            ),
            {
                "id": last[1] + 1,
                "seq": last[0] + 1,
                "at": "2026-11-28 10:00:00.000000",
                "prev": "0" * 64,
                "mac": "f" * 64,
            },
        )
    findings = report().findings
    assert (last[0] + 1, "row_altered") in [(f.seq, f.kind) for f in findings]
    assert actor  # (the deleted row had content)
    engine.dispose()


@pytest.mark.slow
def test_audit_verify_command_and_a_truncated_tail(
    registry: Registry, db_url: str, template, photo
):
    registry.submit(registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    env = {**REGISTRY_ENV, "PATH": "/usr/bin:/bin", "CENTRAL_DATABASE_URL": db_url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "central_api.cli", "audit", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert cli("checkpoint").returncode == 0
    ok = cli("verify")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True, ok.stdout
    engine = create_engine(db_url)
    with engine.begin() as conn:
        _bypass_triggers(conn, db_url, on=False)
        top = conn.execute(text("SELECT max(seq) FROM audit_events")).scalar()
        conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": top})
    engine.dispose()
    bad = cli("verify")
    assert bad.returncode == 1
    assert ("tail_missing", top) in [
        (f["kind"], f["seq"]) for f in json.loads(bad.stdout)["findings"]
    ]


@pytest.mark.postgres
def test_the_application_role_may_only_read_and_append_the_audit(tmp_path):
    """Production layout: an owner role migrates, the application's role gets INSERT and
    SELECT on the audit tables only (PostgreSQL)."""
    from conftest import PG_URL

    from central_api.db import migrate

    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        conn.execute(text("DROP ROLE IF EXISTS rnp_app_test"))
        conn.execute(text("CREATE ROLE rnp_app_test LOGIN PASSWORD 'app'"))
        conn.execute(text("GRANT USAGE ON SCHEMA public TO rnp_app_test"))
    admin.dispose()
    import os

    os.environ["CENTRAL_APP_DB_ROLE"] = "rnp_app_test"
    try:
        migrate(PG_URL)
    finally:
        del os.environ["CENTRAL_APP_DB_ROLE"]
    app_url = PG_URL.replace("rnp:rnp@", "rnp_app_test:app@")
    kiosk = KioskIdentity.generate("KIOSK-ROLE-01")
    register_kiosk(app_url, kiosk)  # the application can write what it must (audited)
    app = create_engine(app_url)
    for sql in (
        "UPDATE audit_events SET actor = 'x'",
        "DELETE FROM audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "TRUNCATE audit_events",
    ):
        with pytest.raises(Exception, match=r"permission denied|must be owner"), app.begin() as c:
            c.execute(text(sql))
    with app.connect() as c:
        assert c.execute(text("SELECT count(*) FROM audit_events")).scalar() == 1
    app.dispose()
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # the grants go with the schema; then the role can go
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
        conn.execute(text("DROP ROLE rnp_app_test"))
    admin.dispose()


# ---------------------------------------------------------------------------- the sender side
def test_the_sealed_packet_names_its_kiosk_in_a_header_checked_first(
    registry: Registry, template, photo
):
    packet = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    sealed = seal(
        packet.model_dump_json().encode(),
        registry.kiosk.kiosk_id,
        registry.kiosk.key.sign,
        PACKET_PUB,
    )
    no_header = registry.client.post(
        "/v1/enrolments", content=sealed, headers={"content-type": "application/json"}
    )
    assert no_header.status_code == 401
    other = registry.post_raw(sealed, kiosk_id="KIOSK-NOBODY-00")
    assert other.status_code == 401 and other.json() == no_header.json()
    assert registry.post_raw(sealed).status_code == 201


def test_a_kiosk_whose_packets_keep_being_refused_is_throttled_at_the_gate(
    registry_factory, db_url: str, template, photo
):
    reg: Registry = registry_factory(refusals_per_minute=5)
    good = reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    broken = json.loads(good.model_dump_json())
    broken["face_image"] = base64.b64encode(b"not an image at all").decode()
    # nobody can get a kiosk throttled by naming it: unauthenticated garbage does not count
    for _ in range(10):
        assert reg.post_raw(b"{}", kiosk_id=reg.kiosk.kiosk_id).status_code == 400
    answers = [reg.post(json.dumps(broken).encode()).status_code for _ in range(7)]
    assert answers == [422] * 5 + [429] * 2
    r = reg.submit(good)  # even a good packet waits: the kiosk is misbehaving
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert count(db_url, "enrolments") == 0
    other = KioskIdentity.generate("KIOSK-TANGER-05")
    register_kiosk(db_url, other)
    fine = good.model_copy(update={"kiosk_id": other.kiosk_id})
    assert reg.post(fine.model_dump_json().encode(), signer=other).status_code == 201


@pytest.mark.slow
def test_unknown_and_throttled_senders_wait_in_a_tarpit(registry_factory, template, photo):
    """A flood from one client gets one answer per delay and connection, costing no CPU; a
    wrong signature waits as long as an unknown kiosk (alike in time as in content)."""
    reg: Registry = registry_factory(refusal_delay_seconds=0.5, refusals_per_minute=1)
    body = reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    impostor = KioskIdentity(reg.kiosk.kiosk_id, KioskIdentity.generate("X-1").key)
    nobody = KioskIdentity.generate("KIOSK-NOBODY-00")
    answers = []
    for signer in (nobody, impostor):
        started = time.perf_counter()
        r = reg.post(body.model_dump_json().encode(), signer=signer)
        answers.append((r.status_code, r.text))
        assert time.perf_counter() - started >= 0.5
    assert answers[0] == answers[1] and answers[0][0] == 401
    broken = json.loads(body.model_dump_json())
    broken["face_image"] = base64.b64encode(b"no image").decode()
    assert reg.post(json.dumps(broken).encode()).status_code == 422  # the one refusal allowed
    started = time.perf_counter()
    r = reg.submit(body)
    assert r.status_code == 429 and time.perf_counter() - started >= 0.5
