"""The MOSIP ABIS: formats, each operation's request and answer as MOSIP's ABIS API 1.1
defines them (over HTTP), ordering, shards on a real Ray cluster against the in-process path,
and the queue door on a real ActiveMQ broker with a worker, an actor and the broker killed."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from helpers import KEY, PG_URL, registry_sessions, settings_for
from mosip import FVC, Broker, Datashare, fresh_schema, person_cbeff, request
from sqlalchemy import func, select

from biometrics import fingerprint as fp
from central_api.abis import formats
from central_api.abis.engine import LocalEngine, Probe, RayEngine
from central_api.abis.formats import FormatError
from central_api.abis.models import AbisJob, AbisReference
from central_api.abis.service import (
    AbisWorker,
    Failure,
    load_references,
    open_reference,
    parse_request,
    shard_loader,
    submit,
)
from central_api.crypto import FieldCipher
from central_api.db import migrate, transaction
from central_api.main import create_app

TOKEN = "abis-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def share() -> Iterator[Datashare]:
    d = Datashare()
    yield d
    d.close()


@pytest.fixture
def abis(db_url: str) -> Iterator[TestClient]:
    """The registry with its ABIS door open and its ABIS worker running (in-process engine)."""
    settings = settings_for(db_url, abis_token=TOKEN, start_worker=False, worker_poll_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        yield client


def call(client: TestClient, body: dict[str, Any] | bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/abis/v1/requests", content=data, headers=AUTH)
    assert r.status_code == 200, r.text
    return dict(r.json())


def insert(client: TestClient, share: Datashare, cbeff: bytes, ref: str) -> dict[str, Any]:
    return call(client, request("insert", referenceId=ref, referenceURL=share.put(cbeff)))


# -- formats -------------------------------------------------------------------------------------
def test_cbeff_carries_each_modality_and_refuses_what_is_not_one() -> None:
    finger = cv2.imread(str(FVC / "DB1_B/101_1.png"), cv2.IMREAD_GRAYSCALE)
    image = fp.FingerImage(finger, 2, 500)
    iris = b"IIR\x00020\x00" + b"\0" * 40
    face_jpeg = cv2.imencode(".jpg", np.full((120, 90, 3), 128, np.uint8))[1].tobytes()
    minutiae = (FVC / "DB2_B/103_4.iso").read_bytes()
    xml = formats.build(
        faces=[formats.face_record(face_jpeg, 90, 120)],
        finger_images={2: formats.finger_record(image)},
        finger_templates={7: minutiae},
        irises=[iris],
        exceptions=[10],
    )
    assert xml.count(b"<BIR>") == 5 and b"Left LittleFinger" in xml
    bio = formats.parse(xml)
    assert bio.faces == [face_jpeg]
    assert np.array_equal(bio.finger_images[2].pixels, finger)  # JPEG 2000 lossless
    assert bio.finger_images[2].dpi == 500
    assert bio.finger_templates[7].position == 7
    assert bio.irises == [iris] and bio.exceptions == ["Finger Left LittleFinger"]
    # WSQ and PNG 2011 records, and the 2005 record, decode too
    for compression in ("WSQ", "PNG"):
        back = formats.read_finger_record(formats.finger_record(image, compression))
        assert back.pixels.shape == finger.shape and back.position == 2
    assert formats.read_finger_record(image.to_iso19794_4()).position == 2

    def refused(data: bytes) -> int:
        with pytest.raises(FormatError) as info:
            formats.parse(data)
        return info.value.reason

    assert refused(b"not xml") == 16
    bomb = b'<?xml version="1.0"?><!DOCTYPE BIR [<!ENTITY a "aaaa">]><BIR>&a;</BIR>'
    assert refused(bomb) == 16  # no DTD, no entity expansion
    assert refused(formats.build(exceptions=[1, 2])) == 11  # nothing captured
    wrong_position = formats.build(finger_images={3: formats.finger_record(image)})
    assert refused(wrong_position) == 16  # the record says position 2
    truncated = formats.build(finger_images={2: formats.finger_record(image)[:-500]})
    assert refused(truncated) == 16
    assert refused(xml.replace(b"<Type>Face</Type>", b"<Type>Voice</Type>")) == 16


def test_datashare_opens_with_the_partner_key_only() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    xml = person_cbeff(101, 1)
    body = formats.seal_datashare(xml, key.public_key(), b"t" * 32)
    assert formats.open_datashare(body, key) == xml
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(FormatError) as info:
        formats.open_datashare(body, other)
    assert info.value.reason == 7
    tampered = base64.urlsafe_b64decode(body)
    tampered = tampered[:-1] + bytes([tampered[-1] ^ 1])
    with pytest.raises(FormatError):
        formats.open_datashare(base64.urlsafe_b64encode(tampered), key)


# -- requests -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "mosip.abis.unknown"}, 14),
        ({"version": "1.0"}, 13),
        ({"requestId": None}, 6),
        ({"requesttime": None}, 9),
        ({"requesttime": "2026-11-29 10:00:00"}, 15),
        ({"referenceId": None}, 5),
        ({"referenceURL": None}, 8),
        ({"surprise": "field"}, 4),
    ],
)
def test_an_insert_is_checked_in_mosip_order(change: dict[str, Any], reason: int) -> None:
    req = request("insert", referenceId="r1", referenceURL="https://x/y")
    for key, value in change.items():
        if value is None:
            req.pop(key)
        else:
            req[key] = value
    with pytest.raises(Failure) as info:
        parse_request(json.dumps(req))
    assert info.value.reason == reason
    answer = info.value.response()
    assert answer["returnValue"] == "2" and answer["failureReason"] == str(reason)


def test_each_operation_answers_as_mosip_defines_it(abis: TestClient, share: Datashare) -> None:
    # 10 persons of four real fingers each; each enrolled with impression 1
    for finger in range(101, 111):
        req = request(
            "insert", referenceId=f"ref-{finger}", referenceURL=share.put(person_cbeff(finger, 1))
        )
        got = call(abis, req)
        assert got["returnValue"] == "1" and got["requestId"] == req["requestId"]
    again = insert(abis, share, person_cbeff(101, 1), "ref-101")
    assert (again["returnValue"], again["failureReason"]) == ("2", "10")
    # the same person comes back (impression 3) under a new reference id
    ins = insert(abis, share, person_cbeff(104, 3), "ref-104-again")
    assert ins["returnValue"] == "1" and set(ins) == {
        "id",
        "requestId",
        "responsetime",
        "returnValue",
    }
    assert ins["responsetime"].endswith("Z")
    ident = request(
        "identify",
        referenceId="ref-104-again",
        referenceUrl="",
        flags={"maxResults": "30", "targetFPIR": "30"},
    )
    got = call(abis, ident)
    assert got["id"] == "mosip.abis.identify" and got["requestId"] == ident["requestId"]
    assert got["returnValue"] == "1"
    candidates = got["candidateList"]["candidates"]
    assert got["candidateList"]["count"] == str(len(candidates)) == "1"
    best = candidates[0]
    assert best["referenceId"] == "ref-104"  # never the probe itself
    assert float(best["analytics"]["internalScore"]) > float(
        got["candidateList"]["analytics"]["threshold"]
    )
    assert 0 <= int(best["analytics"]["confidence"]) <= 100
    assert [m["biometricType"] for m in best["modalities"]] == ["FIR"]
    # a person never enrolled: no candidate
    insert(abis, share, person_cbeff(105, 2), "probe-105")
    call(abis, request("delete", referenceId="ref-105"))
    alone = call(abis, request("identify", referenceId="probe-105"))
    assert alone["candidateList"] == {
        "count": "0",
        "candidates": [],
        "analytics": alone["candidateList"]["analytics"],
    }
    # a gallery limits the search to the references it names
    in_gallery = request(
        "identify",
        referenceId="ref-104-again",
        gallery={"referenceIds": [{"referenceId": "ref-101"}, {"referenceId": "ref-104"}]},
    )
    assert [c["referenceId"] for c in call(abis, in_gallery)["candidateList"]["candidates"]] == [
        "ref-104"
    ]
    elsewhere = request(
        "identify",
        referenceId="ref-104-again",
        gallery={"referenceIds": [{"referenceId": "ref-101"}]},
    )
    assert call(abis, elsewhere)["candidateList"]["count"] == "0"
    # identify by URL (MOSIP sends an empty one; an adopter may not)
    by_url = call(abis, request("identify", referenceURL=share.put(person_cbeff(107, 5))))
    assert [c["referenceId"] for c in by_url["candidateList"]["candidates"]] == ["ref-107"]
    # unknown reference, deleted reference, unknown delete
    assert call(abis, request("identify", referenceId="nobody"))["failureReason"] == "12"
    assert call(abis, request("identify", referenceId="ref-105"))["failureReason"] == "12"
    assert call(abis, request("delete", referenceId="ref-105"))["failureReason"] == "12"
    # a datashare that cannot be fetched, one that is not CBEFF, one with no data
    gone = request("insert", referenceId="x1", referenceURL="http://127.0.0.1:9/nothing")
    assert call(abis, gone)["failureReason"] == "7"
    junk = insert(abis, share, b"<html/>", "x2")
    assert junk["failureReason"] == "16"
    assert insert(abis, share, formats.build(exceptions=[1]), "x3")["failureReason"] == "11"
    # ping, pendingJobs, referenceCount
    ping = call(abis, request("ping"))
    assert ping["returnValue"] == "1" and ping["id"] == "mosip.abis.ping"
    assert call(abis, request("pendingJobs"))["jobscount"] == "0"
    count = call(abis, request("referenceCount"))
    assert count["count"] == "11"  # 10 + the second copy of 104 + probe-105 - deleted 105
    # a request queued twice (a redelivered message) is worked once, answered the same
    dup = request("insert", referenceId="ref-108-b", referenceURL=share.put(person_cbeff(108, 2)))
    first, second = call(abis, dup), call(abis, dup)
    assert first == second and first["returnValue"] == "1"
    # and a refusal is an answer, not an HTTP error
    assert call(abis, b"{not json")["failureReason"] == "4"
    assert (
        abis.post(
            "/abis/v1/requests", content=b"{}", headers={"Authorization": "Bearer no"}
        ).status_code
        == 404
    )


def test_the_registry_s_templates_are_made_from_face_and_finger_images(
    photo: Callable[[str], bytes], tmp_path: Path, share: Datashare
) -> None:
    url = f"sqlite:///{tmp_path / 'abis.db'}"
    migrate(url)
    settings = settings_for(url, abis_token=TOKEN, start_worker=False, worker_poll_seconds=0.05)

    def cbeff(name: str, impression: int) -> bytes:
        jpeg = photo(name)
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        finger = cv2.imread(str(FVC / f"DB1_B/102_{impression}.png"), cv2.IMREAD_GRAYSCALE)
        return formats.build(
            faces=[formats.face_record(jpeg, img.shape[1], img.shape[0])],
            finger_images={1: formats.finger_record(fp.FingerImage(finger, 1, 500))},
        )

    with TestClient(create_app(settings)) as client:
        assert insert(client, share, cbeff("biden__biden.jpg", 1), "a")["returnValue"] == "1"
        got = call(
            client, request("identify", referenceURL=share.put(cbeff("biden__biden2.jpg", 2)))
        )
    (candidate,) = got["candidateList"]["candidates"]
    assert candidate["referenceId"] == "a"
    assert {m["biometricType"] for m in candidate["modalities"]} == {"FIR", "FID"}
    with registry_sessions(url) as factory, factory() as s:
        row = s.scalar(select(AbisReference))
        assert row is not None and row.faces is not None and b"FMR" not in row.fingers  # sealed


@pytest.mark.postgres
def test_an_identify_waits_for_every_insert_queued_before_it(share: Datashare) -> None:
    url = _fresh_pg()
    settings = settings_for(url)
    with registry_sessions(url) as factory:
        cipher = FieldCipher(settings.key_bytes())
        with transaction(factory) as s:
            jobs = [
                submit(
                    s,
                    request(
                        "insert",
                        referenceId=f"r{i}",
                        referenceURL=share.put(person_cbeff(101 + i, 1)),
                    ),
                    "http",
                )
                for i in range(2)
            ]
            submit(s, request("identify", referenceId="r0"), "http")
        worker = AbisWorker(factory, cipher, settings, LocalEngine())
        first, second = worker._claim(), worker._claim()  # two workers take the two inserts
        assert first is not None and second is not None
        assert (first.operation, second.operation) == ("mosip.abis.insert",) * 2
        assert worker._claim() is None  # the identify must wait for both
        with transaction(factory) as s:
            s.get(AbisJob, jobs[0].id).status = "done"
        assert worker._claim() is None
        with transaction(factory) as s:
            s.get(AbisJob, jobs[1].id).status = "done"
        third = worker._claim()
        assert third is not None and third.operation == "mosip.abis.identify"


def test_an_insert_worked_twice_at_once_stores_one_reference_and_succeeds(
    share: Datashare, tmp_path: Path
) -> None:
    """A job whose lease ran out while its worker was still fetching is taken over; whichever
    run commits second finds the first's reference and answers success, not 'exists'."""
    url = f"sqlite:///{tmp_path / 'abis.db'}"
    migrate(url)
    settings = settings_for(url)
    req = request("insert", referenceId="r", referenceURL=share.put(person_cbeff(101, 1)))
    with registry_sessions(url) as factory:
        cipher = FieldCipher(settings.key_bytes())
        with transaction(factory) as s:
            submit(s, req, "http")
        engine = LocalEngine()
        first = AbisWorker(factory, cipher, settings, engine)
        job = first._claim()
        assert job is not None

        def fetch_while_the_other_run_commits(url: str) -> bytes:
            body = first._http_fetch(url)
            assert first._insert(job, req)["returnValue"] == "1"
            return body

        second = AbisWorker(
            factory, cipher, settings, engine, fetch=fetch_while_the_other_run_commits
        )
        assert second._insert(job, req)["returnValue"] == "1"
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(AbisReference)) == 1
        assert engine.size() == 1


def _fresh_pg() -> str:
    return fresh_schema(PG_URL)


# -- Ray -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray cluster (2 CPUs) started by this process; its address for other processes."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="rnp-abis")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _enrol_fvc(url: str, share: Datashare, fingers: range, impression: int) -> None:
    settings = settings_for(url, abis_token=TOKEN, start_worker=False, worker_poll_seconds=0.05)
    with TestClient(create_app(settings)) as client:
        for finger in fingers:
            assert (
                insert(client, share, person_cbeff(finger, impression), f"p{finger}-{impression}")[
                    "returnValue"
                ]
                == "1"
            )


@pytest.mark.postgres
@pytest.mark.slow
def test_ray_shards_answer_as_one_process_and_reload_after_a_kill(
    ray_address: str, share: Datashare
) -> None:
    url = _fresh_pg()
    _enrol_fvc(url, share, range(101, 111), 1)
    _enrol_fvc(url, share, range(101, 111), 2)  # a second copy of each: two candidates each
    key = base64.b64decode(KEY)
    with registry_sessions(url) as factory:
        cipher = FieldCipher(key)
        local = LocalEngine()
        for batch in load_references(factory, cipher):
            local.add(batch)
        probes = []
        with factory() as s:
            for row in s.scalars(select(AbisReference).order_by(AbisReference.id)):
                r = open_reference(cipher, row)
                probes.append(Probe(r.faces, r.fingers))
    import functools

    sharded = RayEngine(2, functools.partial(shard_loader, url, key), address=ray_address)
    try:
        assert sharded.size() == local.size() == 20

        def answers(engine: Any) -> list[list[tuple[int, float]]]:
            return [
                [(c.person_id, round(c.llr, 9)) for c in engine.identify(p, 10)] for p in probes
            ]

        expected = answers(local)
        assert all(len(a) >= 2 for a in expected)  # self and the other copy, at least
        assert answers(sharded) == expected
        pids = sharded.pids()
        os.kill(pids[0], signal.SIGKILL)  # Ray restarts it; it reloads its shard from PostgreSQL
        assert answers(sharded) == expected
        assert sharded.pids()[0] != pids[0]
    finally:
        sharded.shutdown()


# -- the broker ---------------------------------------------------------------------------------
@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    why = Broker.available()
    if why is not None:
        pytest.fail(why)
    b = Broker(tmp_path / "activemq")
    b.start()
    yield b
    b.stop()


class Mosip:
    """MOSIP's side of the queues: sends requests, collects answers by request id."""

    def __init__(self, port: int) -> None:
        import stomp

        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.forms: dict[str, str] = {}
        self.lock = threading.Lock()
        self.port = port
        outer = self

        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def on_message(self, frame: Any) -> None:
                body = json.loads(frame.body)
                with outer.lock:
                    outer.answers.setdefault(body["requestId"], []).append(body)
                    outer.forms[body["requestId"]] = (
                        "bytes" if "content-length" in frame.headers else "text"
                    )

        self.listener = Listener()
        self.conn: Any = None
        self.connect()

    def connect(self) -> None:
        import stomp

        self.conn = stomp.Connection([("127.0.0.1", self.port)], auto_content_length=False)
        self.conn.set_listener("mosip", self.listener)
        self.conn.connect(wait=True)
        self.conn.subscribe("/queue/abis-to-mosip", "mosip", ack="auto")

    def send(self, req: dict[str, Any], form: str = "text") -> None:
        headers = {"persistent": "true", "amq-msg-type": form}
        self.conn.send("/queue/mosip-to-abis", json.dumps(req), headers=headers)

    def wait(self, request_ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(r in self.answers for r in request_ids):
                    return
            time.sleep(0.2)
        missing = [r for r in request_ids if r not in self.answers]
        raise AssertionError(f"{len(missing)} of {len(request_ids)} requests unanswered")


def _workers(n: int, env: dict[str, str], log: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "central_api.cli",
                    "--log-level",
                    "warning",
                    "abis-worker",
                    "--broker",
                ],
                env=env,
                stdout=open(log / f"worker{i}.log", "ab"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
        )
    return procs


@pytest.mark.postgres
@pytest.mark.slow
def test_mosip_over_activemq_survives_a_killed_worker_actor_and_broker(
    broker: Broker, ray_address: str, share: Datashare, tmp_path: Path
) -> None:
    url = _fresh_pg()
    env = {
        **os.environ,
        "CENTRAL_DATABASE_URL": url,
        "CENTRAL_DATA_KEY": KEY,
        "CENTRAL_ABIS_ENGINE": "ray",
        "CENTRAL_ABIS_SHARDS": "2",
        "CENTRAL_ABIS_RAY_ADDRESS": ray_address,
        "CENTRAL_ABIS_BROKER": f"127.0.0.1:{broker.port}",
        "CENTRAL_WORKER_POLL_SECONDS": "0.1",
        "CENTRAL_ABIS_LEASE_SECONDS": "5",
    }
    workers = _workers(2, env, tmp_path)
    mosip = Mosip(broker.port)
    inserts, identifies = [], []
    try:
        # MOSIP's flow: insert, then identify once the insert answered
        def enrol(finger: int, impression: int, form: str = "text") -> tuple[str, str]:
            ins = request(
                "insert",
                referenceId=f"m{finger}-{impression}",
                referenceURL=share.put(person_cbeff(finger, impression)),
            )
            mosip.send(ins, form)
            ident = request(
                "identify",
                referenceId=ins["referenceId"],
                referenceUrl="",
                flags={"maxResults": "30", "targetFPIR": "30"},
            )
            return ins["requestId"], ident

        pending = [enrol(f, 1, "bytes" if f % 2 else "text") for f in range(101, 106)]
        mosip.wait([r for r, _ in pending], 240)
        for r, ident in pending:
            assert mosip.answers[r][0]["returnValue"] == "1"
            mosip.send(ident)
            identifies.append(ident["requestId"])
        inserts += [r for r, _ in pending]
        assert mosip.forms[pending[0][0]] == "bytes" and mosip.forms[pending[1][0]] == "text"
        # kill -9 a worker while requests are queued
        pending = [enrol(f, 1) for f in range(106, 111)]
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        mosip.wait([r for r, _ in pending], 240)
        inserts += [r for r, _ in pending]
        # kill -9 a shard actor
        import ray

        actor = ray.get_actor("rnp-abis-shard-1", namespace="rnp-abis")
        os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
        # duplicates of persons enrolled before both kills, identified after
        dups = [enrol(f, 3) for f in (102, 108)]
        mosip.wait([r for r, _ in dups], 240)
        for _, ident in dups:
            mosip.send(ident)
            identifies.append(ident["requestId"])
        inserts += [r for r, _ in dups]
        # kill -9 the broker with answers and requests in flight, then bring it back
        late = [enrol(f, 4) for f in (103, 109)]
        time.sleep(0.5)
        broker.kill()
        time.sleep(2)
        broker.start()
        mosip.connect()
        inserts += [r for r, _ in late]
        mosip.wait(inserts + identifies, 240)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                w.kill()
        try:
            ray.get_actor("rnp-abis-shard-0", namespace="rnp-abis")
            for i in range(2):
                ray.kill(ray.get_actor(f"rnp-abis-shard-{i}", namespace="rnp-abis"))
        except Exception:
            pass
    for r in inserts:
        assert {a["returnValue"] for a in mosip.answers[r]} == {"1"}, (
            inserts.index(r),
            mosip.answers[r],
        )
    # each duplicate is found, each first enrolment finds nobody
    found = {
        r: [c["referenceId"] for c in mosip.answers[r][0]["candidateList"]["candidates"]]
        for r in identifies
    }
    assert [found[r] for r in identifies[:5]] == [[]] * 5
    assert [found[r] for r in identifies[5:]] == [["m102-1"], ["m108-1"]]
    with registry_sessions(url) as factory, factory() as s:
        # no job lost, each worked once to one answer, no reference twice
        assert (
            s.scalar(select(func.count()).select_from(AbisJob).where(AbisJob.status != "done")) == 0
        )
        assert (
            s.scalar(select(func.count()).select_from(AbisJob).where(AbisJob.replied.is_(False)))
            == 0
        )
        assert s.scalar(select(func.count()).select_from(AbisReference)) == 14
        assert s.scalar(select(func.count(func.distinct(AbisReference.reference_id)))) == 14
