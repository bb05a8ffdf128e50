"""Load on the MOSIP ABIS as MOSIP drives it: enrolments through a real ActiveMQ broker
(insert, then identify once the insert answered), worked by ABIS worker processes over gallery
shards on a local Ray cluster, the queue in PostgreSQL; optionally with a worker, a shard
actor and the broker killed -9 once each along the way.

    .venv/bin/python bench/bench_mosip.py ENROLMENTS [--actors 2] [--workers 2] [--faults]

Persons are the template-level population (bench/population.py: ten synthetic fingers a
person, as ISO 19794-2 minutiae records in the CBEFF, no face: extraction from images costs
1-2.5 s a finger here and would measure LEADER, not the ABIS); every tenth enrolment is a
second visit of an earlier person, whose identify must name the first. Prints throughput
(enrolments a second), latency p50 / p99 (insert sent -> identify answered), memory of each
shard actor, and the checks: no job lost, none answered twice differently, no reference twice,
every duplicate found. Uses the PostgreSQL at RNP_TEST_POSTGRES_URL (its schema is replaced).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from bench_abis import _visit
from mosip import Broker, Datashare, fresh_schema, request

from central_api.abis import formats

KEY = base64.b64encode(b"b" * 32).decode()


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cbeff(pid: int, visit: int) -> bytes:
    prints, _ = _visit(pid, visit)
    return formats.build(finger_templates={t.position: t.to_iso19794_2() for t in prints})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("enrolments", type=int)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--in-flight", type=int, default=16, help="enrolments MOSIP keeps open")
    ap.add_argument("--faults", action="store_true", help="kill -9 a worker, an actor, the broker")
    args = ap.parse_args()

    import ray
    import stomp
    from sqlalchemy import func, select

    from central_api.abis.models import AbisJob, AbisReference
    from central_api.abis.service import load_references
    from central_api.crypto import FieldCipher
    from central_api.db import make_engine, make_session_factory

    url = os.environ.get("RNP_TEST_POSTGRES_URL")
    if not url:
        sys.exit("set RNP_TEST_POSTGRES_URL (bash scripts/ensure-postgres.sh prints one)")
    fresh_schema(url)

    work = Path(tempfile.mkdtemp(prefix="bench-mosip-"))
    broker = Broker(work / "activemq")
    broker.start()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="rnp-abis")
    env = {
        **os.environ,
        "CENTRAL_DATABASE_URL": url,
        "CENTRAL_DATA_KEY": KEY,
        "CENTRAL_ABIS_ENGINE": "ray",
        "CENTRAL_ABIS_SHARDS": str(args.actors),
        "CENTRAL_ABIS_RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        "CENTRAL_ABIS_BROKER": f"127.0.0.1:{broker.port}",
        "CENTRAL_WORKER_POLL_SECONDS": "0.05",
        "CENTRAL_ABIS_LEASE_SECONDS": "20",
    }

    def worker(i: int) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning"]
        return subprocess.Popen(
            [*cmd, "abis-worker", "--broker"],
            env=env,
            stdout=open(work / f"worker{i}.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    workers = [worker(i) for i in range(args.workers)]
    share = Datashare()

    # MOSIP's side: answers by request id
    answers: dict[str, list[dict]] = {}
    arrived: dict[str, float] = {}
    lock = threading.Condition()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_receipt(self, frame) -> None:  # type: ignore[no-untyped-def]
            receipts.add(frame.headers.get("receipt-id", ""))

        def on_message(self, frame) -> None:  # type: ignore[no-untyped-def]
            body = json.loads(frame.body)
            with lock:
                answers.setdefault(body["requestId"], []).append(body)
                arrived.setdefault(body["requestId"], time.perf_counter())
                lock.notify_all()

    conn: list[stomp.Connection] = []

    def connect() -> None:
        c = stomp.Connection([("127.0.0.1", broker.port)], auto_content_length=False)
        c.set_listener("mosip", Listener())
        c.connect(wait=True)
        c.subscribe("/queue/abis-to-mosip", "mosip", ack="auto")
        conn[:] = [c]

    receipts: set[str] = set()

    def send(req: dict) -> None:
        """As MOSIP's JMS producer sends a persistent message: synchronously, so a message the
        broker did not take is sent again (a first run lost the one message sent, without a
        receipt, just before the broker was killed)."""
        for _ in range(120):
            receipt = f"r-{req['requestId']}"
            headers = {"persistent": "true", "amq-msg-type": "text", "receipt": receipt}
            try:
                conn[0].send("/queue/mosip-to-abis", json.dumps(req), headers=headers)
                deadline = time.monotonic() + 10
                while receipt not in receipts and time.monotonic() < deadline:
                    time.sleep(0.002)
                if receipt not in receipts:
                    raise TimeoutError("no receipt")
                return
            except Exception:  # the broker is down (a fault): reconnect and send again
                time.sleep(0.5)
                try:
                    connect()
                except Exception:
                    continue
        raise RuntimeError("the broker never came back")

    connect()
    # the enrolments: person i, or (every tenth) a second visit of person i - 7
    plan = []
    for i in range(args.enrolments):
        if i % 10 == 9 and i >= 7:
            plan.append((i - 7, 1, f"r{i - 7}-v0"))
        else:
            plan.append((i, 0, None))
    print(f"making {len(plan)} CBEFFs ...", flush=True)
    shares = [share.put(_cbeff(pid, visit)) for pid, visit, _ in plan]
    time.sleep(2.0)  # the workers start, join Ray, find or start the actors

    inserts: dict[str, tuple[int, str]] = {}  # insert request id -> (enrolment, identify id)
    sent_at: dict[str, float] = {}
    identify_of: dict[int, str] = {}
    latencies: list[float] = []
    faults = {len(plan) // 4: "worker", len(plan) // 2: "actor", 3 * len(plan) // 4: "broker"}
    started = time.perf_counter()
    next_i, open_ = 0, set()
    done = 0
    while done < len(plan):
        while next_i < len(plan) and len(open_) < args.in_flight:
            pid, visit, _ = plan[next_i]
            ins = request("insert", referenceId=f"r{pid}-v{visit}", referenceURL=shares[next_i])
            sent_at[ins["requestId"]] = time.perf_counter()
            inserts[ins["requestId"]] = (next_i, "")
            open_.add(ins["requestId"])
            send(ins)
            if args.faults and next_i in faults:
                kind = faults.pop(next_i)
                print(f"  kill -9 {kind} at enrolment {next_i}", flush=True)
                if kind == "worker":
                    os.kill(workers[0].pid, signal.SIGKILL)
                    workers[0].wait()
                    workers[0] = worker(len(workers) + 10)  # its replacement, as a supervisor would
                elif kind == "actor":
                    actor = ray.get_actor("rnp-abis-shard-0", namespace="rnp-abis")
                    os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
                else:
                    broker.kill()
                    time.sleep(1.0)
                    broker.start()
                    connect()
            next_i += 1
        with lock:
            lock.wait(0.5)
            ready = [r for r in open_ if r in answers]
        for r in ready:
            open_.discard(r)
            if r in inserts:  # an insert answered: MOSIP sends the identify
                i, _ = inserts[r]
                if answers[r][0]["returnValue"] != "1":
                    raise RuntimeError(f"insert {i} failed: {answers[r][0]}")
                pid, visit, _ = plan[i]
                ident = request(
                    "identify",
                    referenceId=f"r{pid}-v{visit}",
                    referenceUrl="",
                    flags={"maxResults": "30", "targetFPIR": "30"},  # REGPROC's defaults
                )
                identify_of[i] = ident["requestId"]
                sent_at[ident["requestId"]] = sent_at[r]
                open_.add(ident["requestId"])
                send(ident)
            else:
                latencies.append(arrived[r] - sent_at[r])
                done += 1
                if done % max(1, len(plan) // 10) == 0:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {done} enrolments decided, {rate:.2f}/s", flush=True)
    wall = time.perf_counter() - started

    # the checks
    found_dup = missed = false_hit = 0
    for i, (pid, _, first) in enumerate(plan):
        cands = [
            c["referenceId"] for c in answers[identify_of[i]][0]["candidateList"]["candidates"]
        ]
        if first is None:  # (its second visit may be inserted before it is identified)
            false_hit += any(not c.startswith(f"r{pid}-") for c in cands)
        elif cands[:1] == [first]:
            found_dup += 1
        else:
            missed += 1
    twice = sum(
        1 for v in answers.values() if len({json.dumps(a.get("candidateList")) for a in v}) > 1
    )
    actors = [
        ray.get_actor(f"rnp-abis-shard-{i}", namespace="rnp-abis") for i in range(args.actors)
    ]
    rss = [_rss_kib(ray.get(a.pid.remote())) for a in actors]
    db = make_engine(url)
    factory = make_session_factory(db, base64.b64decode(KEY))
    t0 = time.perf_counter()  # what a restarted actor does: its references read and opened
    loaded = sum(len(b) for b in load_references(factory, FieldCipher(base64.b64decode(KEY))))
    reload_s = time.perf_counter() - t0
    with factory() as s:
        open_jobs = s.scalar(
            select(func.count()).select_from(AbisJob).where(AbisJob.status != "done")
        )
        refs = s.scalar(select(func.count()).select_from(AbisReference))
        distinct = s.scalar(select(func.count(func.distinct(AbisReference.reference_id))))
    db.dispose()
    lat = np.array(latencies) * 1e3
    print(
        f"\n{len(plan)} enrolments, {args.actors} actors, {args.workers} workers"
        f"{', faults: worker + actor + broker killed -9' if args.faults else ''}"
    )
    print(f"  throughput: {len(plan) / wall:.2f} enrolments/s ({wall:.0f} s)")
    print(
        f"  latency insert->identify answered: p50 {np.percentile(lat, 50):.0f} ms, "
        f"p99 {np.percentile(lat, 99):.0f} ms"
    )
    print(
        f"  a shard's reload: {loaded} references in {reload_s:.1f} s ({loaded / reload_s:.0f}/s)"
    )
    print(f"  shard actors' memory (RSS): {', '.join(f'{r / 1024:.0f} MiB' for r in rss)}")
    print(
        f"  duplicates found {found_dup}, missed {missed}; first enrolments with another "
        f"person as a candidate {false_hit}"
    )
    print(
        f"  jobs not done {open_jobs}; answers differing on redelivery {twice}; "
        f"references {refs} ({distinct} distinct)"
    )
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(timeout=60)
    for a in actors:
        ray.kill(a)
    ray.shutdown()
    broker.stop()
    share.close()


if __name__ == "__main__":
    main()
