"""Bad input gets a clear 4xx and leaves nothing stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from helpers import PACKET_PUB, Registry, count, demographics, register_kiosk
from pydantic import ValidationError

from central_api.enrolment.schemas import seal
from kiosk.client import KioskIdentity, build_packet

TABLES = ("enrolments", "persons", "face_references", "issued_identifiers")


@pytest.fixture
def good(registry: Registry, template, photo) -> dict:
    """A valid packet as a JSON-ready dict, to be broken by each test."""
    packet = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    return json.loads(packet.model_dump_json())


def assert_nothing_stored(db_url: str) -> None:
    for table in TABLES:
        assert count(db_url, table) == 0, table
    assert count(db_url, "audit_events", "entity <> 'kiosk'") == 0


def detail(r) -> str:  # type: ignore[no-untyped-def]
    return json.dumps(r.json()["detail"])


def test_malformed_json(registry: Registry, db_url: str):
    r = registry.post(b'{"packet_id": "abc",')
    assert r.status_code == 422
    assert "json" in detail(r).lower()
    assert_nothing_stored(db_url)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(packet_id="not-a-uuid"), "packet_id"),
        (lambda p: p.update(captured_at="yesterday"), "captured_at"),
        (lambda p: p.update(face_templates="abc"), "face_templates"),
        (lambda p: p["face_templates"][0].pop(), "face_templates"),
        (lambda p: p["face_templates"][0].append(0.1), "face_templates"),
        (lambda p: p.update(face_templates=[]), "face_templates"),
        (lambda p: p.update(face_templates=[[0.0] * 128]), "all zeros"),
        (lambda p: p["face_templates"][0].__setitem__(3, "x"), "face_templates"),
        (lambda p: p.update(face_image="%%%not base64%%%"), "base64"),
        (lambda p: p.update(face_image="aGVsbG8gd29ybGQ="), "face_image"),
        (lambda p: p.update(extra_field=1), "extra_field"),
        (lambda p: p["demographics"].update(sex="male"), "sex"),
        (lambda p: p["demographics"].update(nationality="Morocco"), "nationality"),
        (lambda p: p["demographics"].update(date_of_birth="2999-01-01"), "future"),
        (lambda p: p["demographics"].update(surname_latin="العمراني"), "Latin"),
        (lambda p: p["demographics"].update(surname_arabic="Amrani"), "Arabic"),
        (lambda p: p["demographics"]["document"].update(number="ab 12"), "number"),
        (lambda p: p.update(kiosk_id="x"), "kiosk_id"),
        (lambda p: p.update(schema_version=2), "schema_version"),
        (
            lambda p: p.update(fingerprints=[{"position": 1, "quality": 50, "data": "AAAA"}] * 2),
            "repeat",
        ),
        (
            lambda p: p.update(fingerprints=[{"position": 11, "quality": 5, "data": "AA=="}]),
            "position",
        ),
    ],
)
def test_wrong_fields_are_named_in_the_error(registry: Registry, db_url: str, good, mutate, field):
    mutate(good)
    r = registry.post(json.dumps(good).encode())
    assert r.status_code == 422, r.text
    assert field.lower() in detail(r).lower()
    assert_nothing_stored(db_url)


def test_nan_and_infinity_in_templates(registry: Registry, db_url: str, good):
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = json.dumps(good).replace(str(good["face_templates"][0][5]), bad, 1)
        assert bad in body
        r = registry.post(body.encode())
        assert r.status_code == 422, r.text
        assert "face_templates" in detail(r)
    assert_nothing_stored(db_url)


def test_truncated_image_is_refused(registry: Registry, db_url: str, template, photo):
    jpeg = photo("biden__biden.jpg")
    packet = registry.packet([template("biden__biden.jpg")], jpeg)
    assert registry.submit(packet).status_code == 201  # the intact image is fine
    body = json.loads(packet.model_dump_json())
    body["packet_id"] = str(uuid.uuid4())
    for broken in (jpeg[: len(jpeg) // 2], jpeg[:2000], jpeg[:-2]):
        body["face_image"] = base64.b64encode(broken).decode()
        r = registry.post(json.dumps(body).encode())
        assert r.status_code == 422
        assert "corrupt or truncated" in detail(r)
    assert count(db_url, "enrolments") == 1


def test_kiosk_side_packet_builder_refuses_a_truncated_image(template, photo):
    jpeg = photo("biden__biden.jpg")
    with pytest.raises(ValidationError, match="corrupt or truncated"):
        build_packet("KIOSK-FES-01", demographics(), [template("biden__biden.jpg")], jpeg[:-300])


def test_oversize_body_is_refused_before_parsing(registry_factory, db_url: str):
    reg = registry_factory(max_body_bytes=4096)
    big = b'{"pad": "' + b"x" * 10_000 + b'"}'
    r = reg.post(big)
    assert r.status_code == 413
    assert "4096" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit must hold on the streamed body too
        for _ in range(10):
            yield b"x" * 1000

    r = reg.client.post(
        "/v1/enrolments",
        content=chunks(),
        headers={"content-type": "application/json", "x-kiosk-id": reg.kiosk.kiosk_id},
    )
    assert r.status_code == 413
    assert_nothing_stored(db_url)


def test_unknown_kiosk_and_wrong_signature_look_alike(registry: Registry, db_url: str, good):
    good["kiosk_id"] = "KIOSK-UNKNOWN-9"
    stranger = KioskIdentity.generate("KIOSK-UNKNOWN-9")
    r = registry.post(json.dumps(good).encode(), signer=stranger)  # turned away at the gate
    good["kiosk_id"] = registry.kiosk.kiosk_id
    impostor = KioskIdentity(registry.kiosk.kiosk_id, stranger.key)  # known id, wrong key
    r2 = registry.post(json.dumps(good).encode(), signer=impostor)
    assert r.status_code == r2.status_code == 401
    assert r.json() == r2.json() and r.json()["code"] == "not_authenticated"
    assert "KIOSK" not in r.text
    assert_nothing_stored(db_url)


def test_only_sealed_packets_signed_by_the_kiosk_are_accepted(
    registry: Registry, db_url: str, good
):
    body = json.dumps(good).encode()
    r = registry.post_raw(body)  # plain JSON, not sealed
    assert r.status_code == 400 and "not a sealed enrolment packet" in detail(r)

    impostor = KioskIdentity.generate(registry.kiosk.kiosk_id)  # right id, wrong key
    r = registry.post(body, signer=impostor)
    assert r.status_code == 401 and r.json()["code"] == "not_authenticated"

    # sealed to another registry's key: cannot be opened here
    other = X25519PrivateKey.generate().public_key().public_bytes_raw()
    r = registry.post_raw(seal(body, registry.kiosk.kiosk_id, registry.kiosk.key.sign, other))
    assert r.status_code == 400 and "could not be decrypted" in detail(r)

    # tampered in transit: any flipped bit of the ciphertext, the ephemeral key or the kiosk id
    sealed = json.loads(seal(body, registry.kiosk.kiosk_id, registry.kiosk.key.sign, PACKET_PUB))
    for field in ("ct", "epk", "nonce"):
        raw = bytearray(base64.b64decode(sealed[field]))
        raw[len(raw) // 2] ^= 0x01
        bad = dict(sealed, **{field: base64.b64encode(bytes(raw)).decode()})
        r = registry.post_raw(json.dumps(bad).encode())
        assert r.status_code == 400, field
    other_kiosk = dict(sealed, kiosk_id="KIOSK-OTHER-02")
    assert registry.post_raw(json.dumps(other_kiosk).encode()).status_code == 400
    assert_nothing_stored(db_url)


def test_a_kiosk_cannot_send_another_kiosks_packet(registry: Registry, db_url: str, good):
    other = KioskIdentity.generate("KIOSK-OTHER-02")
    register_kiosk(db_url, other)
    r = registry.post(json.dumps(good).encode(), signer=other)  # packet says KIOSK-FES-01
    assert r.status_code == 422 and "sending kiosk" in detail(r)
    assert count(db_url, "enrolments") == 0


def test_replayed_envelopes_are_refused_but_resends_are_idempotent(
    registry: Registry, db_url: str, good
):
    body = json.dumps(good).encode()
    envelope = seal(body, registry.kiosk.kiosk_id, registry.kiosk.key.sign, PACKET_PUB)
    first = registry.post_raw(envelope)
    assert first.status_code == 201, first.text
    replay = registry.post_raw(envelope)  # the same envelope captured and sent again
    assert replay.status_code == 409 and "replay" in detail(replay)
    resend = registry.post(body)  # the kiosk resending: a new envelope, the same packet
    assert resend.status_code == 200
    assert resend.json()["idcs"] == first.json()["idcs"]
    stale = registry.post(body, sent_at=int(time.time()) - 3600)
    assert stale.status_code == 409 and stale.json()["code"] == "clock_skew"
    assert stale.json()["retryable"] is True
    assert abs(stale.json()["server_time"] - time.time()) < 60
    future = registry.post(body, sent_at=int(time.time()) + 3600)
    assert future.status_code == 409 and future.json()["code"] == "clock_skew"
    assert count(db_url, "enrolments") == 1
    assert count(db_url, "persons") == 1


def test_foreigner_without_arabic_names_is_accepted(registry: Registry, template, photo):
    d = demographics(
        surname_arabic=None,
        given_names_arabic=None,
        nationality="FRA",
        surname_latin="Dupont-Lefèvre",
        given_names_latin="Élodie",
        sex="F",
        document={"type": "RESIDENCE_CARD", "number": "E1234567", "issuing_country": "MAR"},
    )
    r = registry.submit(
        registry.packet(
            [template("rose_leslie__img1.jpg")], photo("rose_leslie__img1.jpg"), demographics=d
        )
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "issued"
