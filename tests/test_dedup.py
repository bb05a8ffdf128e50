"""1:N dedup on fingers and face fused: the three outcomes, the evidence, batches, restarts,
several processes, deletions."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import zlib

import numpy as np
import pytest
from helpers import Registry, capture, count, fingers
from sqlalchemy import select

from biometrics import fingerprint as fp
from biometrics.gallery import FaceGallery, FingerGallery, normalise
from central_api.adjudication.models import AdjudicationCase
from central_api.db import transaction
from central_api.dedup import fusion
from central_api.dedup.fusion import Comparison, FingerScore, Outcome, Thresholds
from central_api.enrolment.models import Enrolment
from central_api.enrolment.schemas import FingerException, FingerprintRecord
from central_api.identity.idcs import IdcsPolicy
from central_api.identity.models import IssuedIdentifier, Person
from central_api.identity.service import delete_person, issue_person


def test_thresholds_follow_the_target_fpir_and_the_gallery_size():
    small, big = Thresholds(1_000, 1e-3, 1e-2), Thresholds(1_000_000, 1e-3, 1e-2)
    assert small.duplicate == pytest.approx(math.log(1e6))
    assert big.duplicate - small.duplicate == pytest.approx(math.log(1000))
    assert small.adjudication < small.duplicate
    finger = FingerScore(1, 1, 30.0, 6.0)
    strong = Comparison(7, small.duplicate + 0.1, (finger,))
    assert fusion.decide(None, small) == (Outcome.UNIQUE, None)
    assert fusion.decide(strong, small) == (Outcome.DUPLICATE, None)
    assert fusion.decide(strong, big) == (Outcome.UNIQUE, None)  # common among 1M
    assert fusion.decide(strong, Thresholds(5_000, 1e-3, 1e-2)) == (
        Outcome.ADJUDICATION,
        "near_match",
    )
    weak = Comparison(7, small.adjudication - 0.1, (finger,))
    assert fusion.decide(weak, small) == (Outcome.UNIQUE, None)
    # the face alone never makes a duplicate, however strong
    face_only = Comparison(7, 1e3, (), 0.99, 1e3)
    assert fusion.decide(face_only, small) == (Outcome.ADJUDICATION, "face_only")


def test_calibration_is_clamped_to_the_measured_range():
    cal = fusion.FINGER
    assert cal.llr(cal.hi + 100) == cal.llr(cal.hi) > 0
    assert cal.llr(-5) == cal.llr(cal.lo) < 0
    assert fusion.FACE.llr(5.0) == fusion.FACE.llr(fusion.FACE.hi) >= fusion.FACE.llr(1.0) > 0
    assert fusion.FACE.llr(0.0) == fusion.FACE.llr(fusion.FACE.lo) < 0


def _templates(seed: int) -> dict[int, fp.FingerprintTemplate]:
    return {r.position: fp.FingerprintTemplate.from_iso19794_2(r.data) for r in fingers(seed)}


def test_fusion_sums_what_both_sides_have_and_finds_a_swapped_finger():
    mine, other = _templates(1), _templates(2)
    probe = {p: fp.FingerprintMatcher(t) for p, t in mine.items()}
    no_face = np.zeros((0, 128), np.float32)
    same = fusion.compare(1, probe, no_face, mine, no_face)
    assert len(same.fingers) == 10 and same.face_score is None
    assert same.llr == pytest.approx(sum(f.llr for f in same.fingers))
    assert same.llr > 5 * fusion.FINGER.llr(fusion.FINGER.hi)
    stranger = fusion.compare(2, probe, no_face, other, no_face)
    assert stranger.llr < 0
    # the candidate lacks four fingers: they contribute nothing
    partial = fusion.compare(1, probe, no_face, {p: mine[p] for p in (1, 2, 3, 6, 7, 8)}, no_face)
    assert len(partial.fingers) == 6
    # the left and right index fingers were captured under each other's positions
    swapped = {2: probe[7], 7: probe[2]}
    found = fusion.compare(1, swapped, no_face, mine, no_face)
    assert [(f.position, f.matched_position) for f in found.fingers] == [(2, 7), (7, 2)]
    assert found.llr > 0
    assert found.llr == pytest.approx(
        2 * (fusion.FINGER.llr(fusion.FINGER.hi) + math.log(fusion.SWAP_PRIOR)), abs=0.5
    )


def test_face_gallery_search_is_exact_and_per_person():
    rng = np.random.default_rng(0)
    g = FaceGallery()
    data = rng.normal(size=(300, 128)).astype(np.float32)
    for person in range(100):  # 3 references a person
        g.add(person, data[3 * person : 3 * person + 3])
    probe = data[42] + 0.01 * rng.normal(size=128).astype(np.float32)
    hits = g.search(probe[None], k=5)
    assert hits[0].person_id == 14
    brute = normalise(data) @ normalise(probe)[0]
    assert hits[0].score == pytest.approx(float(brute.max()), abs=1e-5)
    assert len({h.person_id for h in hits}) == len(hits) == 5
    assert g.templates(14).shape == (3, 128)
    assert g.remove(14) == 3 and len(g) == 297
    assert all(h.person_id != 14 for h in g.search(probe[None], k=5))
    assert g.templates(14).shape == (0, 128)
    with pytest.raises(ValueError):
        g.add(999, np.full((1, 128), np.nan, dtype=np.float32))


def test_finger_gallery_finds_a_person_from_any_finger_in_any_position():
    g, coded = FingerGallery(), FingerGallery()
    for person in range(30):
        prints = list(_templates(100 + person).values())
        g.add(person, prints)
        # the codes kept beside the references: the same index without building cylinders
        coded.add(person, prints, np.stack([fp.index_code(t) for t in prints]))
    assert len(g) == 300 and fp.index_code(prints[0]).shape == (fp.CODE_BITS // 8,)
    mine = _templates(117)
    hits = g.search(list(mine.values()), k=3)
    assert hits[0].person_id == 17 and hits == coded.search(list(mine.values()), k=3)
    assert g.templates(17)[4].minutiae == mine[4].minutiae  # kept as ISO records, parsed back
    # one finger, presented as another position's
    moved = fp.FingerprintTemplate(
        mine[2].width, mine[2].height, mine[2].minutiae, mine[2].dpi, mine[2].quality, 7
    )
    assert g.search([moved], k=3)[0].person_id == 17
    # a finger given again replaces the one held at its position
    g.add(17, [_templates(999)[2]])
    assert len(g) == 300 and g.templates(17)[2].minutiae == _templates(999)[2].minutiae
    assert g.remove(17) == 10 and len(g) == 290
    assert all(h.person_id != 17 for h in g.search(list(mine.values()), k=5))
    assert g.templates(17) == {}
    assert g.search(list(_templates(103).values()), k=1)[0].person_id == 3  # after compaction
    # a position whose every finger was removed is searched like an empty one
    lone = FingerGallery()
    lone.add(1, [mine[2]])
    lone.add(2, [_templates(102)[3]])
    assert lone.remove(1) == 1
    assert [h.person_id for h in lone.search(list(mine.values()), k=3)] in ([], [2])
    # a compacted index holds exactly its rows: the next add must grow it (an add after a
    # search that compacted a small index once left an orphan row that broke every search)
    lone.add(1, [mine[2]])
    assert lone.search([mine[2]], k=3)[0].person_id == 1
    lone.add(3, [_templates(103)[2]])
    assert lone.search([mine[2]], k=3)[0].person_id == 1


OBAMA = 44  # the seed of the fingers every photo of him comes with


def _obama(reg: Registry, name: str, template, photo, **kw):  # type: ignore[no-untyped-def]
    """A packet of one of Obama's photos, with his fingers."""
    return reg.packet([template(name)], photo(name), fingerprints=fingers(OBAMA), **kw)


def _evidence(reg: Registry, packet_id) -> dict:  # type: ignore[no-untyped-def]
    with reg.app.state.registry.sessions() as s:
        e = s.scalars(select(Enrolment).where(Enrolment.packet_id == packet_id)).one()
        return json.loads(e.evidence)


def test_a_duplicate_is_decided_on_fingers_and_face_with_its_evidence(
    registry: Registry, template, photo
):
    first = registry.submit(_obama(registry, "obama__obama.jpg", template, photo))
    assert first.json()["status"] == "issued"
    second = _obama(registry, "obama__obama2.jpg", template, photo)
    assert registry.submit(second).json()["status"] == "duplicate"
    ev = _evidence(registry, second.packet_id)
    assert ev["outcome"] == "duplicate" and ev["probe"]["fingers"] == list(range(1, 11))
    assert ev["thresholds"]["gallery_size"] == 1
    assert ev["algorithms"] == {"face": "dlib-resnet-v1", "finger": fp.ALGORITHM}
    best = ev["candidates"][0]
    assert best["rank"] == 1 and best["llr"] >= ev["thresholds"]["duplicate"]
    assert [f["position"] for f in best["fingers"]] == list(range(1, 11))
    assert all(f["matched_position"] == f["position"] for f in best["fingers"])
    assert best["face"]["llr"] > 0  # two photos of one man
    assert "template" not in json.dumps(ev)


def test_another_face_with_the_same_fingers_is_a_duplicate(registry: Registry, template, photo):
    """A tampered kiosk keeps a registered person's fingers and changes the face (its
    template and photo agree, so the face check passes): the fingers find the person."""
    registry.submit(_obama(registry, "obama__obama.jpg", template, photo))
    biden = registry.packet(
        [template("biden__biden.jpg")], photo("biden__biden.jpg"), fingerprints=fingers(OBAMA)
    )
    r = registry.submit(biden)
    assert r.json()["status"] == "duplicate"
    best = _evidence(registry, biden.packet_id)["candidates"][0]
    assert best["face"]["llr"] < 0  # the face says another man; ten fingers outweigh it


def test_four_fingers_missing_still_deduplicate(registry: Registry, template, photo):
    registry.submit(_obama(registry, "obama__obama.jpg", template, photo))
    missing = [2, 5, 7, 10]
    packet = registry.packet(
        [template("obama__obama2.jpg")],
        photo("obama__obama2.jpg"),
        fingerprints=[f for f in fingers(OBAMA) if f.position not in missing],
        capture=capture(
            finger_exceptions=[FingerException(position=p, reason="bandaged") for p in missing]
        ),
    )
    assert registry.submit(packet).json()["status"] == "duplicate"
    best = _evidence(registry, packet.packet_id)["candidates"][0]
    assert len(best["fingers"]) == 6


def test_fingers_captured_under_swapped_positions_are_found(registry: Registry, template, photo):
    """Both hands recorded under each other's positions (an operator's slip), and another
    face: the swapped fingers alone must find the person."""
    registry.submit(_obama(registry, "obama__obama.jpg", template, photo))
    swapped = []
    for f in fingers(OBAMA):
        position = fp.FingerPosition(f.position).mirror()
        t = fp.FingerprintTemplate.from_iso19794_2(f.data)
        t = fp.FingerprintTemplate(t.width, t.height, t.minutiae, t.dpi, t.quality, position)
        swapped.append(FingerprintRecord(position=position, quality=70, data=t.to_iso19794_2()))
    packet = registry.packet(
        [template("biden__biden.jpg")], photo("biden__biden.jpg"), fingerprints=swapped
    )
    assert registry.submit(packet).json()["status"] == "duplicate"
    best = _evidence(registry, packet.packet_id)["candidates"][0]
    assert all(
        f["matched_position"] == fp.FingerPosition(f["position"]).mirror() for f in best["fingers"]
    )


def test_a_person_without_fingers_is_decided_by_a_person(registry: Registry, template, photo):
    """No usable finger: the face alone never makes a duplicate; a match is adjudicated."""
    registry.submit(_obama(registry, "obama__obama.jpg", template, photo))
    packet = registry.packet(
        [template("obama__obama2.jpg")],
        photo("obama__obama2.jpg"),
        fingerprints=[],
        capture=capture(
            finger_exceptions=[
                FingerException(position=p, reason="amputated") for p in range(1, 11)
            ]
        ),
    )
    r = registry.submit(packet)
    assert r.json()["status"] == "adjudication" and r.json()["idcs"] is None
    with registry.app.state.registry.sessions() as s:
        assert s.scalars(select(AdjudicationCase.reason)).one() == "face_only"


def test_near_match_goes_to_adjudication(registry_factory, db_url, template, photo):
    # a target FPIR so small that no match reaches it: every match is adjudicated
    reg: Registry = registry_factory(dedup_target_fpir=1e-80)
    reg.submit(_obama(reg, "obama__obama.jpg", template, photo))
    r = reg.submit(_obama(reg, "obama__obama3.jpg", template, photo))
    assert r.json()["status"] == "adjudication"
    assert r.json()["idcs"] is None
    with reg.app.state.registry.sessions() as s:
        case = s.scalars(select(AdjudicationCase)).one()
        assert case.status == "open" and case.reason == "near_match" and case.score > 0
        assert case.candidate_person_id == s.scalars(select(Person.id)).one()
    assert count(db_url, "persons") == 1


def test_a_batch_decides_as_one_at_a_time(registry_factory, tmp_path, template, photo):
    """Five queued enrolments taken as one batch (one search of the galleries for all of
    them), two people twice among them: the copies are caught within the batch, and every
    decision, with its evidence, is the one a second registry makes taking them one by one."""
    from fastapi.testclient import TestClient
    from helpers import register_kiosk, settings_for

    from central_api.db import migrate
    from central_api.main import create_app

    reg = registry_factory(start_worker=False, sync_wait_seconds=0)
    names = [
        "obama__obama.jpg",
        "biden__biden.jpg",
        "obama__obama2.jpg",
        "kit_harington__john1.jpeg",
    ]
    packets = [
        _obama(reg, n, template, photo)
        if n.startswith("obama")
        else reg.packet([template(n)], photo(n))
        for n in names
    ]
    packets.append(reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    one_url = f"sqlite:///{tmp_path / 'one_by_one.db'}"
    migrate(one_url)
    register_kiosk(one_url, reg.kiosk)
    with TestClient(
        create_app(settings_for(one_url, start_worker=False, sync_wait_seconds=0))
    ) as client:
        one = Registry(client, reg.kiosk)
        for p in packets:
            reg.submit(p)
            one.submit(p)
        assert len(reg.app.state.registry.dedup.process_batch(len(packets))) == len(packets)
        for _ in packets:
            assert len(one.app.state.registry.dedup.process_batch(1)) == 1
        decided = []
        for r in (reg, one):
            with r.app.state.registry.sessions() as s:
                rows = s.scalars(select(Enrolment).order_by(Enrolment.id)).all()
                decided.append([(e.status, e.person_id, json.loads(e.evidence)) for e in rows])
    batch, sequential = decided
    assert [status for status, _, _ in batch] == [
        "issued",
        "issued",
        "duplicate",
        "issued",
        "duplicate",
    ]
    assert batch[2][1] == batch[0][1] and batch[4][1] == batch[1][1]
    assert batch == sequential


def test_gallery_is_rebuilt_from_the_database_at_start(registry_factory, template, photo):
    """From the stored index codes, or (references made before migration 0006) from the
    templates: the same gallery either way."""
    from sqlalchemy import update

    from central_api.identity.models import FingerReference

    a = registry_factory()
    a.submit(_obama(a, "obama__obama.jpg", template, photo))
    a.submit(a.packet([template("biden__biden.jpg")], photo("biden__biden.jpg")))
    a.client.__exit__(None, None, None)
    with transaction(a.app.state.registry.sessions) as s:
        assert all(s.scalars(select(FingerReference.index_code)))
    probe = _obama(a, "obama__obama2.jpg", template, photo)
    searches = []
    for codes_kept in (True, False):
        if not codes_kept:
            with transaction(a.app.state.registry.sessions) as s:
                s.execute(update(FingerReference).values(index_code=None))
        b = registry_factory()  # a new process would see only the database
        service = b.app.state.registry.dedup.service
        assert service.persons == 2 and len(service.faces) == 2 and len(service.fingers) == 20
        prints = [fp.FingerprintTemplate.from_iso19794_2(f.data) for f in probe.fingerprints]
        searches.append(service.fingers.search(prints, k=2))
        b.client.__exit__(None, None, None)
    assert searches[0] == searches[1]
    b = registry_factory()
    assert b.submit(probe).json()["status"] == "duplicate"


def test_two_servers_on_one_database_stay_consistent(registry_factory, db_url, template, photo):
    a, b = registry_factory(), registry_factory()  # both galleries loaded while empty
    ra = a.submit(_obama(a, "obama__obama.jpg", template, photo))
    assert ra.json()["status"] == "issued"
    rb = b.submit(_obama(b, "obama__obama2.jpg", template, photo))
    assert rb.json()["status"] == "duplicate"  # b caught up from the database first

    # the person is deleted through b; a still holds the references in memory
    with transaction(b.app.state.registry.sessions) as s:
        assert delete_person(s, ra.json()["idcs"], actor="test") is not None
    assert count(db_url, "finger_references") == 0
    rc = a.submit(_obama(a, "obama__obama3.jpg", template, photo))
    assert rc.json()["status"] == "issued"  # a stale in-memory hit never decides
    assert rc.json()["idcs"] != ra.json()["idcs"]
    assert count(db_url, "issued_identifiers") == 2


def test_an_idcs_is_never_reused_after_deletion(registry: Registry):
    sessions, policy = registry.app.state.registry.sessions, IdcsPolicy()
    with transaction(sessions) as s:
        first = issue_person(s, policy, "test", rng=random.Random(7)).idcs
    with transaction(sessions) as s:
        delete_person(s, first, "test")
    with transaction(sessions) as s:
        # the same random stream proposes the deleted number first: it must be skipped
        second = issue_person(s, policy, "test", rng=random.Random(7)).idcs
    assert second != first
    with sessions() as s:
        assert set(s.scalars(select(IssuedIdentifier.idcs))) == {first, second}
        assert list(s.scalars(select(Person.idcs))) == [second]


def test_the_face_reference_is_the_registrys_own_template_of_the_token_image(
    registry: Registry, template, photo
):
    """The kiosk's frames (two templates here) serve its own checks; the registry keeps one
    template, its own encoding of the token image, and finds the person by it."""
    first = template("kit_harington__john1.jpeg")
    second = first + np.random.default_rng(3).normal(0, 0.01, first.shape).astype(np.float32)
    second /= np.linalg.norm(second)
    packet = registry.packet([first, second], photo("kit_harington__john1.jpeg"))
    assert registry.submit(packet).json()["status"] == "issued"
    faces = registry.app.state.registry.dedup.service.faces
    assert len(faces) == 1
    with registry.app.state.registry.sessions() as s:
        e = s.scalars(select(Enrolment).where(Enrolment.packet_id == packet.packet_id)).one()
    (own,) = faces.templates(e.person_id)
    assert float(own @ first) > 0.97  # the registry's encoding of the photo
    r = registry.submit(
        registry.packet(
            [template("kit_harington__john3.jpg")],
            photo("kit_harington__john3.jpg"),
            fingerprints=fingers(zlib.crc32(photo("kit_harington__john1.jpeg"))),
        )
    )
    assert r.json()["status"] == "duplicate"


def _wait_status(reg: Registry, packet_id, want: str, seconds: float = 20.0) -> dict:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + seconds
    while True:
        body = reg.get(packet_id).json()
        if body["status"] == want or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_worker_dying_mid_decision_loses_nothing(registry_factory, template, photo):
    crashed = registry_factory(
        start_worker=False, sync_wait_seconds=0, processing_lease_seconds=0.2
    )
    packet = crashed.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    r = crashed.submit(packet)
    assert r.status_code == 202 and r.json()["status"] == "received"
    # the worker takes the job, starts it ... and dies here
    claimed = crashed.app.state.registry.dedup._claim()
    assert claimed is not None
    crashed.app.state.registry.dedup._start(claimed[0])
    assert crashed.get(packet.packet_id).json()["status"] == "processing"

    survivor = registry_factory(worker_poll_seconds=0.05)  # picks it up once the lease runs out
    body = _wait_status(survivor, packet.packet_id, "issued")
    assert body["status"] == "issued" and body["idcs"]
    with survivor.app.state.registry.sessions() as s:
        from central_api.enrolment.models import Enrolment

        assert s.scalars(select(Enrolment.attempts)).one() == 2


def test_a_worker_dying_charges_only_the_job_it_had_started(registry_factory, template, photo):
    """A worker claims a batch; killed while deciding the first job, it must not count an
    attempt against the others (three such kills rejected honest packets)."""
    crashed = registry_factory(
        start_worker=False, sync_wait_seconds=0, processing_lease_seconds=0.2
    )
    names = ["biden__biden.jpg", "obama__obama.jpg"]
    packets = [crashed.packet([template(n)], photo(n)) for n in names]
    for p in packets:
        crashed.submit(p)
    dedup = crashed.app.state.registry.dedup
    first, second = dedup._claim(), dedup._claim()
    assert first is not None and second is not None
    dedup._start(first[0])  # ... and dies here

    survivor = registry_factory(worker_poll_seconds=0.05)
    for p in packets:
        assert _wait_status(survivor, p.packet_id, "issued")["status"] == "issued"
    with survivor.app.state.registry.sessions() as s:
        from central_api.enrolment.models import Enrolment

        attempts = {i: n for i, n in s.execute(select(Enrolment.id, Enrolment.attempts))}
    assert attempts == {first[0]: 2, second[0]: 1}


@pytest.mark.slow
def test_a_face_check_process_killed_costs_one_retry_not_every_decision(
    registry_factory, template, photo
):
    """The face checks run in processes of their own; one killed -9 (out of memory, an
    operator) broke the pool for good and no packet was ever decided again."""
    reg = registry_factory(start_worker=False, sync_wait_seconds=0)
    dedup = reg.app.state.registry.dedup
    first = reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    reg.submit(first)
    dedup.process_next()
    assert reg.get(first.packet_id).json()["status"] == "issued"
    workers = multiprocessing.active_children()
    assert workers  # the face checks ran in processes of their own
    for p in workers:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    second = reg.packet([template("obama__obama.jpg")], photo("obama__obama.jpg"))
    reg.submit(second)
    for _ in range(3):  # the check in flight when the pool broke is retried, on new processes
        dedup.process_next()
        if reg.get(second.packet_id).json()["status"] != "received":
            break
    assert reg.get(second.packet_id).json()["status"] == "issued"


def test_a_packet_that_keeps_failing_is_rejected_with_a_reason(
    registry_factory, db_url, template, photo
):
    reg = registry_factory(start_worker=False, sync_wait_seconds=0)
    packet = reg.packet([template("biden__biden.jpg")], photo("biden__biden.jpg"))
    reg.submit(packet)
    from sqlalchemy import update

    from central_api.enrolment.models import Enrolment

    with transaction(reg.app.state.registry.sessions) as s:
        s.execute(update(Enrolment).values(attempts=3))
    reg.app.state.registry.dedup.process_next()
    body = reg.get(packet.packet_id).json()
    assert body["status"] == "rejected" and "agent" in body["message"]
    assert count(db_url, "persons") == 0


def test_persons_issued_before_finger_references_get_them_back(
    registry_factory, db_url, template, photo
):
    """Persons issued before migration 0005 have face references only: matched on the face
    alone, never a duplicate. The backfill gives them their enrolment's fingers, resumably."""
    from helpers import registry_cli, registry_env
    from sqlalchemy import delete

    from central_api.identity.models import FingerReference

    a = registry_factory()
    for name in ("obama__obama.jpg", "biden__biden.jpg"):
        assert a.submit(a.packet([template(name)], photo(name))).json()["status"] == "issued"
    a.client.__exit__(None, None, None)
    with transaction(a.app.state.registry.sessions) as s:  # as before migration 0005
        s.execute(delete(FingerReference))
    registry_cli("backfill-fingers", "--batch", "1", env=registry_env(db_url))
    assert count(db_url, "finger_references") == 20
    registry_cli("backfill-fingers", env=registry_env(db_url))  # run again: nothing to add
    assert count(db_url, "finger_references") == 20
    b = registry_factory()  # Biden's fingers with another man's face: the fingers find him
    tom = b.packet(
        [template("tom_cruise__img1.jpg")],
        photo("tom_cruise__img1.jpg"),
        fingerprints=fingers(zlib.crc32(photo("biden__biden.jpg"))),
    )
    assert b.submit(tom).json()["status"] == "duplicate"
