"""End-to-end intake, dedup and issuance through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from helpers import Registry

from central_api.enrolment.schemas import receipt_number
from central_api.identity.idcs import is_valid


def test_unique_person_gets_an_idcs_and_duplicate_is_caught(registry: Registry, template, photo):
    first = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    r = registry.submit(first)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "issued"
    assert is_valid(body["idcs"])
    # the number the kiosk printed before the registry answered
    assert body["receipt_number"] == receipt_number(first.packet_id)

    other = registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    r2 = registry.submit(other)
    assert r2.json()["status"] == "issued"
    assert r2.json()["idcs"] != body["idcs"]

    again = registry.packet(  # another photo of the same man, and his fingers
        [template("obama__obama2.jpg")],
        photo("obama__obama2.jpg"),
        fingerprints=first.fingerprints,
    )
    r3 = registry.submit(again)
    assert r3.status_code == 201
    assert r3.json()["status"] == "duplicate"
    assert r3.json()["idcs"] is None

    got = registry.get(again.packet_id)
    assert got.status_code == 200 and got.json()["status"] == "duplicate"
