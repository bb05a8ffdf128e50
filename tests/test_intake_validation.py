"""Bad input gets a clear 4xx and leaves nothing stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid

import numpy as np
import pytest
from conftest import Registry, count, demographics
from pydantic import ValidationError

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
        "/v1/enrolments", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert_nothing_stored(db_url)


def test_unknown_kiosk(registry: Registry, db_url: str, good):
    good["kiosk_id"] = "KIOSK-UNKNOWN-9"
    stranger = KioskIdentity.generate("KIOSK-UNKNOWN-9")
    r = registry.post(json.dumps(good).encode(), signer=stranger)
    assert r.status_code == 403
    assert "KIOSK-UNKNOWN-9" in r.json()["detail"]
    assert_nothing_stored(db_url)


def test_signature_is_required_and_checked(registry: Registry, db_url: str, good):
    body = json.dumps(good).encode()
    r = registry.client.post(
        "/v1/enrolments", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 401 and "missing" in r.json()["detail"]

    impostor = KioskIdentity.generate(registry.kiosk.kiosk_id)  # right id, wrong key
    assert registry.post(body, signer=impostor).status_code == 401

    # tampered in transit: signed body differs from the body sent
    tampered = dict(good, face_templates=[list(np.ones(128) / np.sqrt(128))])
    sig = registry.kiosk.sign(body)
    r = registry.client.post(
        "/v1/enrolments",
        content=json.dumps(tampered).encode(),
        headers={"content-type": "application/json", "X-Kiosk-Signature": sig},
    )
    assert r.status_code == 401
    r = registry.post(body, **{"X-Kiosk-Signature": "***"})
    assert r.status_code == 401
    assert_nothing_stored(db_url)


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
