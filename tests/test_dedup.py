"""1:N face dedup: the three outcomes, restarts, several processes, deletions."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal

import numpy as np
import pytest
from helpers import Registry, count
from sqlalchemy import select

from central_api.db import transaction
from central_api.dedup.index import FaceGallery, normalise
from central_api.dedup.models import AdjudicationCase
from central_api.dedup.service import Outcome, classify
from central_api.identity.idcs import IdcsPolicy
from central_api.identity.models import IssuedIdentifier, Person
from central_api.identity.service import delete_person, issue_person


def test_classify_thresholds():
    assert classify(None, 0.93, 0.91) is Outcome.UNIQUE
    assert classify(0.909, 0.93, 0.91) is Outcome.UNIQUE
    assert classify(0.91, 0.93, 0.91) is Outcome.ADJUDICATION
    assert classify(0.9299, 0.93, 0.91) is Outcome.ADJUDICATION
    assert classify(0.93, 0.93, 0.91) is Outcome.DUPLICATE


def test_gallery_search_is_exact_and_per_person():
    rng = np.random.default_rng(0)
    g = FaceGallery()
    data = rng.normal(size=(300, 128)).astype(np.float32)
    g.add(list(range(1, 301)), [i // 3 for i in range(300)], data)  # 3 references a person
    probe = data[42] + 0.01 * rng.normal(size=128).astype(np.float32)
    hits = g.search(probe, k=5)
    assert hits[0].person_id == 14
    brute = normalise(data) @ normalise(probe)[0]
    assert hits[0].score == pytest.approx(float(brute.max()), abs=1e-5)
    assert len({h.person_id for h in hits}) == len(hits) == 5
    assert g.remove_person(14) == 3 and len(g) == 297
    assert all(h.person_id != 14 for h in g.search(probe, k=5))
    with pytest.raises(ValueError):
        g.add([999], [1], np.full((1, 128), np.nan, dtype=np.float32))


@pytest.mark.slow
def test_near_match_goes_to_adjudication(registry_factory, db_url, template, photo):
    # thresholds chosen so that a genuine pair falls between them
    reg: Registry = registry_factory(
        face_adjudication_threshold=0.5, face_duplicate_threshold=0.999
    )
    reg.submit(reg.packet([template("obama__obama.jpg")], photo("obama__obama.jpg")))
    r = reg.submit(reg.packet([template("obama__obama3.jpg")], photo("obama__obama3.jpg")))
    assert r.json()["status"] == "adjudication"
    assert r.json()["idcs"] is None
    with reg.app.state.registry.sessions() as s:
        case = s.scalars(select(AdjudicationCase)).one()
        assert case.status == "open" and 0.5 <= case.score < 0.999
        assert case.candidate_person_id == s.scalars(select(Person.id)).one()
    assert count(db_url, "persons") == 1


def test_gallery_is_rebuilt_from_the_database_at_start(registry_factory, template, photo):
    a = registry_factory()
    a.submit(a.packet([template("obama__obama.jpg")], photo("obama__obama.jpg")))
    a.client.__exit__(None, None, None)
    b = registry_factory()  # a new process would see only the database
    assert len(b.app.state.registry.dedup.gallery) == 1
    r = b.submit(b.packet([template("obama__obama2.jpg")], photo("obama__obama2.jpg")))
    assert r.json()["status"] == "duplicate"


def test_two_servers_on_one_database_stay_consistent(registry_factory, db_url, template, photo):
    a, b = registry_factory(), registry_factory()  # both galleries loaded while empty
    ra = a.submit(a.packet([template("obama__obama.jpg")], photo("obama__obama.jpg")))
    assert ra.json()["status"] == "issued"
    rb = b.submit(b.packet([template("obama__obama2.jpg")], photo("obama__obama2.jpg")))
    assert rb.json()["status"] == "duplicate"  # b caught up from the database first

    # the person is deleted through b; a still holds the reference in memory
    with transaction(b.app.state.registry.sessions) as s:
        assert delete_person(s, ra.json()["idcs"], actor="test") is not None
    rc = a.submit(a.packet([template("obama__obama3.jpg")], photo("obama__obama3.jpg")))
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


def test_several_templates_in_one_packet_all_join_the_gallery(registry: Registry, template, photo):
    # two frames of one capture session: nearly the same template, both of the photo sent
    first = template("kit_harington__john1.jpeg")
    second = first + np.random.default_rng(3).normal(0, 0.01, first.shape).astype(np.float32)
    second /= np.linalg.norm(second)
    r = registry.submit(registry.packet([first, second], photo("kit_harington__john1.jpeg")))
    assert r.json()["status"] == "issued"
    assert len(registry.app.state.registry.dedup.gallery) == 2
    r = registry.submit(
        registry.packet([template("kit_harington__john3.jpg")], photo("kit_harington__john3.jpg"))
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
