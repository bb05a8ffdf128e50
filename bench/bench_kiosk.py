"""Kiosk benchmark: time and CPU per enrolment, and outbox throughput after an outage.

    .venv/bin/python bench/bench_kiosk.py [people] [queued]

1. ``people`` enrolments (default 5) driven through the session against the device daemon
   (its own process, simulated devices, the emulated card through pcscd): wall time and CPU
   seconds per phase (card, face, ten fingers, packet build + outbox commit), for the kiosk
   process and the daemon process separately.
2. ``queued`` packets (default 1000) wait in the outbox while the registry is down; the
   registry comes up and the sync worker drains them: packets/s until every one is
   acknowledged and until every one is decided. Baseline in the same run: one sending thread
   that waits for each decision (what a naive client does), on a tenth of the packets.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _evidence import evidence  # noqa: E402  (bench/, beside this script)

from kiosk import demo  # noqa: E402
from kiosk.client import CentralClient, KioskIdentity, build_packet  # noqa: E402
from kiosk.outbox import Outbox, SyncWorker  # noqa: E402
from kiosk.session import EnrolmentSession, KioskSettings, Operators, Step  # noqa: E402


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_pid(work: Path) -> int:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
            except OSError:
                continue
            if b"devices.cli\x00serve" in cmd:
                return int(p.name)
    raise RuntimeError("device daemon process not found")


def enrolments(people: int, work: Path) -> None:
    faces = demo.find_faces_dir()
    ids = demo.identities(faces)
    rng = random.Random(1)
    citizens = [
        demo.Citizen(i, name, photos, demo.person(i, rng), set())
        for i, (name, photos) in enumerate(list(ids.items())[:people])
    ]
    with demo.device_daemon(work) as devices:
        pid = daemon_pid(work)
        outbox = Outbox(work / "outbox.db", Outbox.load_key(work / "outbox.key"))
        session = EnrolmentSession(
            KioskSettings("KIOSK-BENCH-01", trust_dir=work / "trust"),
            devices,
            outbox,
            Operators(work / "ops.json"),
        )
        phases = ("card", "face", "fingers", "packet")
        wall = {p: [] for p in phases}
        kcpu = {p: [] for p in phases}
        dcpu = {p: [] for p in phases}

        def timed(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            w, c, d = time.perf_counter(), time.process_time(), cpu_of(pid)
            fn()
            wall[name].append(time.perf_counter() - w)
            kcpu[name].append(time.process_time() - c)
            dcpu[name].append(cpu_of(pid) - d)

        for who in citizens:
            who.present(devices)
            d = who.demographics
            session.start()
            session.choose_language("fr")
            time.sleep(1.0)  # let pcscd see the card (not timed: the person is putting it down)
            timed(
                "card",
                lambda d=d: session.read_card(
                    d.document.number, d.date_of_birth.isoformat(), "2034-12-31"
                ),
            )
            timed("face", session.capture_face)

            def fingers() -> None:
                while session.step == Step.FINGERS:
                    session.capture_finger()

            timed("fingers", fingers)
            timed("packet", lambda d=d: session.submit(d.address, d.place_of_birth))
        print(f"per enrolment, mean of {len(citizens)} (kiosk process / device daemon process):")
        print(f"  {'phase':8s} {'wall s':>8s} {'kiosk CPU s':>12s} {'daemon CPU s':>13s}")
        tot = [0.0, 0.0, 0.0]
        for p in phases:
            row = [sum(x) / len(x) for x in (wall[p], kcpu[p], dcpu[p])]
            tot = [a + b for a, b in zip(tot, row, strict=True)]
            print(f"  {p:8s} {row[0]:8.2f} {row[1]:12.2f} {row[2]:13.2f}")
        print(f"  {'total':8s} {tot[0]:8.2f} {tot[1]:12.2f} {tot[2]:13.2f}")
        outbox.close()


def throughput(queued: int, work: Path) -> None:
    faces = demo.find_faces_dir()
    from biometrics import face

    photo = (faces / "obama__obama.jpg").read_bytes()
    image = face.decode_image(photo)
    template = face.encode(image, thresholds=None)
    import cv2

    small = cv2.imencode(".jpg", cv2.resize(image[:, :, ::-1], (320, 400)))[1].tobytes()
    identity = KioskIdentity.generate(demo.KIOSK_ID)

    who = demo.person(0, random.Random(0))

    def fill(n: int, name: str) -> Outbox:
        box = Outbox(work / f"{name}.db", Outbox.load_key(work / f"{name}.key"))
        for _ in range(n):
            box.put(build_packet(demo.KIOSK_ID, who, [template], small, **evidence()))
        return box

    (work / "central").mkdir()
    with demo.central_service(work / "central", identity) as (url, keys, _env):
        # baseline: one thread, each send waits for the registry's decision
        n0 = max(10, queued // 10)
        base = fill(n0, "baseline")
        client = CentralClient(url, identity, *keys, retries=0)
        t = time.perf_counter()
        for pid, _state, _attempts, data in base.due(n0):
            st = client.submit(data, wait=True)
            base.acknowledged(pid, st, 0)
        t_base = time.perf_counter() - t
        rate_base = n0 / t_base
        print(
            f"baseline, 1 thread waiting for each decision: {n0} packets in {t_base:.1f} s "
            f"= {rate_base:.1f}/s"
        )

        box = fill(queued, "outbox")  # queued while the registry was unreachable
        worker = SyncWorker(
            box, CentralClient(url, identity, *keys, retries=0), threads=4, status_every=0.5
        )
        t = time.perf_counter()
        worker.start()
        acked = None
        while True:
            c = box.counts()
            if acked is None and not c.get("queued"):
                acked = time.perf_counter() - t
            if not c.get("queued") and not c.get("acked"):
                break
            time.sleep(0.05)
        final = time.perf_counter() - t
        worker.stop()
        print(
            f"outbox drain after an outage, 4 threads, {queued} packets: all acknowledged in "
            f"{acked:.1f} s ({queued / acked:.1f}/s), all decided in {final:.1f} s "
            f"({queued / final:.1f}/s); {queued / final / rate_base:.1f}x the baseline"
        )


def main() -> None:
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    queued = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "enrol").mkdir()
        enrolments(people, work / "enrol")
        throughput(queued, work)


if __name__ == "__main__":
    main()
