"""Idempotent submission on packet id, and the status endpoint."""

from __future__ import annotations

import json
import time
import uuid

from conftest import Registry, count, register_kiosk

from kiosk.client import KioskIdentity


def test_same_packet_twice_gives_the_same_answer_and_one_enrolment(
    registry: Registry, db_url: str, template, photo
):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    first = registry.submit(packet)
    again = registry.submit(packet)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    # the same content with other whitespace is still the same packet
    relaxed = json.dumps(json.loads(packet.model_dump_json()), indent=2).encode()
    assert registry.post(relaxed).json()["idcs"] == first.json()["idcs"]
    assert count(db_url, "enrolments") == 1
    assert count(db_url, "persons") == 1
    assert count(db_url, "issued_identifiers") == 1


def test_different_body_under_an_existing_packet_id_is_a_conflict(
    registry: Registry, db_url: str, template, photo
):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    first = registry.submit(packet).json()
    changed = packet.model_copy(
        update={"demographics": packet.demographics.model_copy(update={"address": "Rabat"})}
    )
    r = registry.submit(changed)
    assert r.status_code == 409
    assert str(packet.packet_id) in r.json()["detail"]
    assert registry.get(packet.packet_id).json() == first
    assert count(db_url, "enrolments") == 1


def test_status_of_unknown_and_malformed_packet_ids(registry: Registry):
    r = registry.get(uuid.uuid4())
    assert r.status_code == 404
    assert registry.get("not-a-uuid").status_code == 422


def test_health_reports_gauges_without_personal_data(registry: Registry, template, photo):
    registry.submit(registry.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    h = registry.client.get("/v1/health").json()
    assert h == {"status": "ok", "persons": 1, "gallery_references": 1, "queued": 0}


def test_only_the_sending_kiosk_can_read_a_status(registry: Registry, db_url, template, photo):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    registry.submit(packet)
    assert registry.get(packet.packet_id).status_code == 200

    path = f"/v1/enrolments/{packet.packet_id}"
    assert registry.client.get(path).status_code == 422  # no kiosk headers at all

    other = KioskIdentity.generate("KIOSK-OUJDA-02")
    register_kiosk(db_url, other)
    r = registry.get(packet.packet_id, signer=other)  # a genuine kiosk, but not the sender
    assert r.status_code == 404 and r.json() == {
        "detail": f"no enrolment with packet id {packet.packet_id} from this kiosk"
    }
    forger = KioskIdentity(registry.kiosk.kiosk_id, other.key)  # right id, wrong key
    assert registry.get(packet.packet_id, signer=forger).status_code == 401
    stale = registry.get(packet.packet_id, ts=int(time.time()) - 3600)  # a replayed old read
    assert stale.status_code == 401 and "timestamp" in stale.json()["detail"]
    ghost = KioskIdentity.generate("KIOSK-GHOST-00")
    assert registry.get(packet.packet_id, signer=ghost).status_code == 403
