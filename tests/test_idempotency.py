"""Idempotent submission on packet id, and the status endpoint."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from helpers import SIGNING_PUB, Registry, count, register_kiosk

from central_api.enrolment.schemas import EnrolmentStatus, verify_status
from kiosk.client import KioskIdentity


def decision(r, registry: Registry) -> dict:  # type: ignore[no-untyped-def]
    """The signed answer, verified with the registry's public key, without its signature."""
    st = EnrolmentStatus.model_validate(r.json())
    verify_status(st, SIGNING_PUB, registry.kiosk.kiosk_id, st.packet_id)
    return st.model_dump(mode="json", exclude={"signed_at", "signature"})


def test_same_packet_twice_gives_the_same_answer_and_one_enrolment(
    registry: Registry, db_url: str, template, photo
):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    first = registry.submit(packet)
    again = registry.submit(packet)
    assert first.status_code == 201 and again.status_code == 200
    assert decision(again, registry) == decision(first, registry)
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
    first = decision(registry.submit(packet), registry)
    changed = packet.model_copy(
        update={"demographics": packet.demographics.model_copy(update={"address": "Rabat"})}
    )
    r = registry.submit(changed)
    assert r.status_code == 409 and r.json()["code"] == "packet_conflict"
    assert r.json()["retryable"] is False
    assert str(packet.packet_id) in r.json()["detail"]
    assert decision(registry.get(packet.packet_id), registry) == first
    assert count(db_url, "enrolments") == 1


def test_status_of_unknown_and_malformed_packet_ids(registry: Registry):
    r = registry.get(uuid.uuid4())
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert registry.get("not-a-uuid").status_code == 422


@pytest.mark.slow
def test_only_the_sending_kiosk_can_read_a_status(registry: Registry, db_url, template, photo):
    packet = registry.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    registry.submit(packet)
    assert registry.get(packet.packet_id).status_code == 200

    path = f"/v1/enrolments/{packet.packet_id}"
    assert registry.client.get(path).status_code == 422  # no kiosk headers at all

    other = KioskIdentity.generate("KIOSK-OUJDA-02")
    register_kiosk(db_url, other)
    time.sleep(2.1)  # the registry's kiosk directory refreshes every 2 s
    r = registry.get(packet.packet_id, signer=other)  # a genuine kiosk, but not the sender
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    # ... is told exactly what it is told of a packet id nobody ever used
    unused = uuid.uuid4()
    never = registry.get(unused, signer=other)
    assert never.status_code == 404
    assert never.text.replace(str(unused), "ID") == r.text.replace(str(packet.packet_id), "ID")
    forger = KioskIdentity(registry.kiosk.kiosk_id, other.key)  # right id, wrong key
    stale = registry.get(packet.packet_id, ts=int(time.time()) - 3600)  # a replayed old read
    ghost = KioskIdentity.generate("KIOSK-GHOST-00")  # not registered at all
    answers = [
        registry.get(packet.packet_id, signer=forger),
        stale,
        registry.get(packet.packet_id, signer=ghost),
    ]
    # from outside, a wrong key, a stale signature and an unknown kiosk look exactly alike
    assert {(a.status_code, a.text) for a in answers} == {(401, answers[0].text)} and answers[
        0
    ].json()["code"] == "not_authenticated"
