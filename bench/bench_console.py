"""How long an adjudicator waits for a case to open, server side, with a gallery of N persons
in PostgreSQL (default 100,000), against the same case in a registry of 1,000 (the baseline,
measured in the same run).

The registry holds N persons, each with an issuing enrolment (encrypted demographics), a face
reference and ten finger references. The case is real: a probe enrolment with a shared face
photo and ten real FVC2004 finger images (DB1_B impression 1), five candidates with real
faces and real prints (the first its mate: DB1_B impression 2; the others DB2_B-DB4_B), the
evidence the dedup's fusion computes for them. Persons who are not candidates hold
placeholder blobs of realistic sizes for their images and templates (opening a case never
reads them; they make the tables and indexes the size they would be).

Measured through the app (TestClient, in process, no network): the case page (claim hold,
six enrolments decrypted, demographics compared, the view audited) and every image it links
(faces watermarked, finger plots with the paired minutiae), p50/p95 over ``--opens``.

    RNP_TEST_POSTGRES_URL=... .venv/bin/python bench/bench_console.py [N] [--opens 20]

Uses the PostgreSQL database at RNP_BENCH_POSTGRES_URL (else RNP_TEST_POSTGRES_URL with its
database renamed ``rnp_bench``); its schema is replaced.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import create_engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _evidence import evidence  # noqa: E402

from biometrics import face  # noqa: E402
from biometrics import fingerprint as fp  # noqa: E402
from central_api.adjudication.models import AdjudicationCase  # noqa: E402
from central_api.crypto import FieldCipher  # noqa: E402
from central_api.db import migrate, transaction, utcnow  # noqa: E402
from central_api.dedup import fusion  # noqa: E402
from central_api.dedup.extraction import face_template  # noqa: E402
from central_api.dedup.service import (  # noqa: E402
    face_context,
    finger_context,
    probe_context,
    probe_to_bytes,
)
from central_api.enrolment.models import Enrolment, Kiosk  # noqa: E402
from central_api.enrolment.schemas import (  # noqa: E402
    Demographics,
    Document,
    EnrolmentState,
    FingerprintRecord,
    receipt_number,
)
from central_api.enrolment.service import ctx  # noqa: E402
from central_api.identity.models import FaceReference, FingerReference, Person  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
FVC = SHARED / "fingerprints" / "fvc2004"
FACES = SHARED / "faces"
KIOSK = "KIOSK-BENCH-01"
BATCH = 5000


def bench_url() -> str:
    url = os.environ.get("RNP_BENCH_POSTGRES_URL")
    if url:
        return url
    test = os.environ.get("RNP_TEST_POSTGRES_URL")
    if not test:
        sys.exit("set RNP_TEST_POSTGRES_URL (bash scripts/ensure-postgres.sh prints one)")
    return test.rsplit("/", 1)[0] + "/rnp_bench"


def fresh(url: str) -> None:
    """An empty, migrated schema at ``url`` (the database is created if missing)."""
    name = url.rsplit("/", 1)[1]
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    migrate(url)


def demographics(i: int) -> Demographics:
    return Demographics(
        surname_latin="Tazi" if i % 2 else "Alaoui",
        given_names_latin="Amina" if i % 3 else "Youssef",
        date_of_birth=f"19{50 + i % 50}-0{1 + i % 9}-1{i % 9}",
        place_of_birth="Rabat",
        sex="F" if i % 2 else "M",
        nationality="MAR",
        address=f"{i % 200} Rue X, Rabat",
        document=Document(type="CNIE", number=f"AB{i:07d}", issuing_country="MAR"),
    )


CAPTURE = evidence()["capture"].model_dump_json()  # type: ignore[attr-defined]


class Identity:
    """A face photo and ten real finger images, with the templates the registry makes."""

    def __init__(self, photo: Path, db: str, impression: int) -> None:
        self.image = photo.read_bytes()
        self.face = face_template(self.image)
        self.records: dict[int, bytes] = {}
        self.templates: dict[int, fp.FingerprintTemplate] = {}
        for position in range(1, 11):
            pixels = cv2.imread(str(FVC / db / f"{100 + position}_{impression}.png"), 0)
            image = fp.FingerImage(pixels, position=position, dpi=500)
            self.records[position] = image.to_iso19794_4()
            self.templates[position] = fp.extract(pixels, dpi=500, position=position)


def enrolment_row(
    cipher: FieldCipher, i: int, person_id: int | None, status: str, who: Identity | None
) -> dict[str, object]:
    pid = uuid.UUID(int=i + 1)

    def enc(value: bytes, field: str) -> bytes:
        return cipher.encrypt(value, ctx(KIOSK, pid, field))

    if who is None:  # never read by a case page: placeholders of realistic size
        face_image = os.urandom(12_000)
        fingers = json.dumps([]).encode()
        faces = np.zeros((1, face.TEMPLATE_DIM), np.float32)
    else:
        face_image = who.image
        fingers = json.dumps(
            [
                FingerprintRecord(
                    position=p, quality=60, data=who.templates[p].to_iso19794_2(), image=r
                ).model_dump(mode="json")
                for p, r in sorted(who.records.items())
            ]
        ).encode()
        faces = who.face
    return {
        "packet_id": pid,
        "receipt_number": receipt_number(pid),
        "kiosk_id": KIOSK,
        "packet_sha256": "0" * 64,
        "captured_at": utcnow(),
        "received_at": utcnow(),
        "updated_at": utcnow(),
        "status": status,
        "attempts": 1,
        "demographics": enc(demographics(i).model_dump_json().encode(), "demographics"),
        "face_image": enc(face_image, "face_image"),
        "face_templates": enc(face.template_to_bytes(faces), "face_templates"),
        "fingerprints": enc(fingers, "fingerprints"),
        "capture": enc(CAPTURE.encode(), "capture"),
        "person_id": person_id,
    }


def populate(url: str, cipher: FieldCipher, n: int, probe: Identity, cands: list[Identity]) -> int:
    """N persons (the candidates among them), the probe's enrolment and its case; returns the
    case id."""
    from central_api.db import make_engine, make_session_factory

    engine = make_engine(url)
    factory = make_session_factory(engine, b"x" * 32)
    cand_at = {(k + 1) * (n // (len(cands) + 1)): c for k, c in enumerate(cands)}
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(Kiosk), [{"id": KIOSK, "public_key": b"k" * 32, "active": True}])
    for lo in range(1, n + 1, BATCH):
        ids = range(lo, min(n + 1, lo + BATCH))
        with engine.begin() as conn:
            conn.execute(insert(Person), [{"id": i, "idcs": f"{i:010d}"} for i in ids])
            conn.execute(
                insert(Enrolment),
                [
                    {"id": i, **enrolment_row(cipher, i, i, EnrolmentState.ISSUED, cand_at.get(i))}
                    for i in ids
                ],
            )
            conn.execute(
                insert(FaceReference),
                [
                    {
                        "person_id": i,
                        "enrolment_id": i,
                        "algorithm": face.ALGORITHM,
                        "template": cipher.encrypt(
                            face.template_to_bytes(
                                cand_at[i].face
                                if i in cand_at
                                else np.zeros((1, face.TEMPLATE_DIM), np.float32)
                            ),
                            face_context(i),
                        ),
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(FingerReference),
                [
                    {
                        "person_id": i,
                        "enrolment_id": i,
                        "position": p,
                        "algorithm": fp.ALGORITHM,
                        "template": cipher.encrypt(
                            cand_at[i].templates[p].to_iso19794_2()
                            if i in cand_at
                            else os.urandom(280),
                            finger_context(i, p),
                        ),
                    }
                    for i in ids
                    for p in range(1, 11)
                ],
            )
        print(f"  {ids[-1]:,} persons in {time.perf_counter() - started:.0f} s", end="\r")
    print()
    with engine.begin() as conn:
        for table in ("persons", "enrolments", "face_references", "finger_references"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            )
        conn.execute(text("ANALYZE"))
    # the probe's enrolment and its case, with the fusion's evidence for each candidate
    matchers = {p: fp.FingerprintMatcher(t) for p, t in probe.templates.items()}
    found = sorted(
        (fusion.compare(i, matchers, probe.face, c.templates, c.face) for i, c in cand_at.items()),
        key=lambda c: -c.llr,
    )
    evidence = {
        "outcome": "adjudication",
        "reason": "near_match",
        "thresholds": {
            "gallery_size": n,
            "target_fpir": 1e-3,
            "adjudication_fpir": 1e-2,
            "duplicate": round(float(np.log(n / 1e-3)), 3),
            "adjudication": round(float(np.log(n / 1e-2)), 3),
        },
        "algorithms": {"face": face.ALGORITHM, "finger": fp.ALGORITHM},
        "probe": {"faces": 1, "fingers": list(range(1, 11)), "face": "image", "unusable": []},
        "candidates": [{"rank": k + 1, **c.evidence()} for k, c in enumerate(found)],
    }
    with transaction(factory) as s:
        row = enrolment_row(cipher, n + 1, None, EnrolmentState.ADJUDICATION, probe)
        e = Enrolment(**row, evidence=json.dumps(evidence), match_score=found[0].llr)
        s.add(e)
        s.flush()
        case = AdjudicationCase(
            enrolment_id=e.id,
            candidate_person_id=found[0].person_id,
            score=found[0].llr,
            reason="near_match",
            probe=cipher.encrypt(probe_to_bytes(probe.face, probe.templates), probe_context(e.id)),
        )
        s.add(case)
        s.flush()
        case_id = case.id
    engine.dispose()
    print(f"  populated in {time.perf_counter() - started:.0f} s")
    return case_id


def measure(url: str, key: bytes, case_id: int, opens: int) -> dict[str, float]:
    """Open the case ``opens`` times through the app; page and image times (ms)."""
    from fastapi.testclient import TestClient

    from central_api.config import Settings
    from central_api.main import create_app
    from central_api.operators import service as ops

    settings = Settings(
        database_url=url,
        data_key=base64.b64encode(key).decode(),
        packet_key=base64.b64encode(b"p" * 32).decode(),
        signing_key=base64.b64encode(b"s" * 32).decode(),
        start_worker=False,
    )
    app = create_app(settings)  # no lifespan: the dedup's galleries are not loaded
    registry = app.state.registry
    with transaction(registry.sessions) as s:
        creds = ops.add_operator(s, registry.cipher, "bench.adj", "adjudicator", "bench")
        from central_api.operators.models import Operator

        s.get(Operator, "bench.adj").must_change_password = False  # type: ignore[union-attr]
    client = TestClient(app, base_url="https://testserver", follow_redirects=False)
    login = client.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/console/login",
        data={
            "operator": "bench.adj",
            "password": creds.password,
            "code": ops.totp(creds.totp_secret),
            "csrf": csrf,
        },
    )
    assert r.status_code == 303, r.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/cases").text).group(1)  # type: ignore[union-attr]
    assert client.post(f"/console/cases/{case_id}/claim", data={"csrf": csrf}).status_code == 303
    pages, faces_ms, fingers_ms, totals = [], [], [], []
    for k in range(opens + 1):
        t0 = time.perf_counter()
        r = client.get(f"/console/cases/{case_id}")
        t1 = time.perf_counter()
        assert r.status_code == 200, r.text[:500]
        links = re.findall(r'src="(/console/img/[^"]+)"', r.text)
        face_t = finger_t = 0.0
        for link in links:
            a = time.perf_counter()
            img = client.get(link)
            assert img.status_code == 200, img.text[:300]
            b = time.perf_counter()
            kind = json.loads(base64.urlsafe_b64decode(link.split("/")[-1].split(".")[0] + "=="))[0]
            if kind == "face":
                face_t += b - a
            else:
                finger_t += b - a
        if k == 0:  # the first open warms up (numba's compiled matcher, templates, caches)
            print(f"  the page links {len(links)} images")
            continue
        pages.append((t1 - t0) * 1e3)
        faces_ms.append(face_t * 1e3)
        fingers_ms.append(finger_t * 1e3)
        totals.append((time.perf_counter() - t0) * 1e3)

    def q(xs: list[float], p: float) -> float:
        return float(np.percentile(xs, p))

    return {
        "page_p50": statistics.median(pages),
        "page_p95": q(pages, 95),
        "faces_p50": statistics.median(faces_ms),
        "fingers_p50": statistics.median(fingers_ms),
        "all_p50": statistics.median(totals),
        "all_p95": q(totals, 95),
        "images": len(links),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("persons", type=int, nargs="?", default=100_000)
    ap.add_argument("--baseline", type=int, default=1_000)
    ap.add_argument("--opens", type=int, default=20)
    args = ap.parse_args()
    url = bench_url()
    key = b"b" * 32
    cipher = FieldCipher(key)
    print("extracting the real prints (LEADER) and faces of the case's identities...")
    t = time.perf_counter()
    probe = Identity(FACES / "rose_leslie__img2.jpg", "DB1_B", 1)
    cands = [
        Identity(FACES / "rose_leslie__img1.jpg", "DB1_B", 2),
        Identity(FACES / "biden__biden.jpg", "DB2_B", 1),
        Identity(FACES / "obama__obama.jpg", "DB3_B", 1),
        Identity(FACES / "tom_cruise__img1.jpg", "DB4_B", 1),
        Identity(FACES / "kit_harington__john1.jpeg", "DB2_B", 2),
    ]
    print(f"  {time.perf_counter() - t:.0f} s")
    results = {}
    for n in (args.baseline, args.persons):
        print(f"gallery of {n:,} persons:")
        fresh(url)
        case_id = populate(url, cipher, n, probe, cands)
        results[n] = measure(url, key, case_id, args.opens)
        r = results[n]
        print(
            f"  case page p50 {r['page_p50']:.0f} ms (p95 {r['page_p95']:.0f}); its "
            f"{r['images']:.0f} images p50 {r['faces_p50']:.0f} ms faces + "
            f"{r['fingers_p50']:.0f} ms finger plots; all p50 {r['all_p50']:.0f} ms "
            f"(p95 {r['all_p95']:.0f})"
        )
    base, big = results[args.baseline], results[args.persons]
    print(
        f"\n{args.persons:,} vs {args.baseline:,} persons: case page "
        f"{big['page_p50'] / base['page_p50']:.2f}x, page with every image "
        f"{big['all_p50'] / base['all_p50']:.2f}x"
    )


if __name__ == "__main__":
    main()
