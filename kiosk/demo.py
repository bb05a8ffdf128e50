"""The end-to-end demo: a central registry on SQLite and a kiosk enrolling real faces.

Starts ``central-api serve`` as its own process (the kiosk talks to it over HTTP only),
enrols one person per identity found in the shared face photos, then re-enrols one of them
from a different photo, and prints the outcome counts as JSON on the last stdout line.
Demographics are invented; the photos are public test images (see their README).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import cv2
import httpx

from biometrics import face
from central_api.enrolment.schemas import Demographics, Document
from kiosk.client import CentralClient, KioskIdentity, build_packet

KIOSK_ID = "KIOSK-DEMO-01"
_SURNAMES = [
    "El Amrani",
    "Benali",
    "Ouazzani",
    "Tazi",
    "Alaoui",
    "Berrada",
    "Chraibi",
    "Idrissi",
    "Bennani",
    "Fassi",
    "Lahlou",
    "Squalli",
    "Naciri",
    "Kettani",
]
_SURNAMES_AR = [
    "العمراني",
    "بنعلي",
    "الوزاني",
    "التازي",
    "العلوي",
    "برادة",
    "الشرايبي",
    "الإدريسي",
    "بناني",
    "الفاسي",
    "لحلو",
    "السقلي",
    "الناصري",
    "الكتاني",
]
_GIVEN = [
    "Youssef",
    "Amine",
    "Karim",
    "Omar",
    "Hamza",
    "Mehdi",
    "Rachid",
    "Said",
    "Nabil",
    "Hicham",
    "Tarik",
    "Adil",
    "Khalid",
    "Anas",
]
_GIVEN_AR = [
    "يوسف",
    "أمين",
    "كريم",
    "عمر",
    "حمزة",
    "مهدي",
    "رشيد",
    "سعيد",
    "نبيل",
    "هشام",
    "طارق",
    "عادل",
    "خالد",
    "أنس",
]
_CITIES = ["Fès", "Rabat", "Casablanca", "Marrakech", "Tanger", "Agadir", "Oujda", "Meknès"]


def find_faces_dir() -> Path:
    """The shared face photos: $RNP_FACES_DIR, else ../shared/data/faces beside the project."""
    here = Path(__file__).resolve().parents[1]
    for cand in (
        os.environ.get("RNP_FACES_DIR"),
        here.parent / "shared" / "data" / "faces",
        here / "shared" / "data" / "faces",
    ):
        if cand and Path(cand).is_dir():
            return Path(cand)
    raise SystemExit("demo: face photos not found; set RNP_FACES_DIR to shared/data/faces")


def identities(faces: Path) -> dict[str, list[Path]]:
    """Photos by identity: ``<identity>__<image>`` files and ``johns/<Name>/`` folders."""
    out: dict[str, list[Path]] = {}
    for p in sorted(faces.glob("*__*.*")):
        if "partial" in p.stem or "small" in p.stem:
            continue  # deliberately poor captures, kept for quality tests
        out.setdefault(p.name.split("__")[0], []).append(p)
    for d in sorted((faces / "johns").glob("*")):
        if d.is_dir():
            out[d.name] = sorted(d.glob("*.jpg"))
    return out


def capture(path: Path) -> tuple[bytes, list]:
    """What the kiosk camera stage yields: a JPEG (longest side <= 640 px) and its template."""
    img = cv2.imread(str(path))
    if img is None:
        raise SystemExit(f"demo: cannot read {path}")
    scale = 640 / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    jpeg = buf.tobytes()
    return jpeg, [face.encode(face.decode_image(jpeg))]


def person(i: int, rng: random.Random) -> Demographics:
    """Invented but plausible Moroccan demographics for demo person ``i``."""
    city = rng.choice(_CITIES)
    return Demographics(
        surname_latin=_SURNAMES[i % len(_SURNAMES)],
        given_names_latin=_GIVEN[i % len(_GIVEN)],
        surname_arabic=_SURNAMES_AR[i % len(_SURNAMES_AR)],
        given_names_arabic=_GIVEN_AR[i % len(_GIVEN_AR)],
        date_of_birth=date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
        place_of_birth=city,
        sex="M",
        nationality="MAR",
        address=f"{rng.randint(1, 200)} Avenue Mohammed V, {city}",
        document=Document(type="CNIE", number=f"AB{100000 + i}", issuing_country="MAR"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _central(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "central_api.cli", "--log-level", "warning", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def serve_central(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``central-api serve`` in its own process on a free port until the block ends;
    yields its base URL once it answers its health check."""
    port = _free_port()
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "serve"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"central service exited; see {log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"central service did not start in 30 s; see {log_path}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def central_service(workdir: Path, kiosk: KioskIdentity) -> Iterator[str]:
    """Run a fresh registry (SQLite) in its own process; yields its base URL."""
    env = dict(os.environ)
    env["CENTRAL_DATABASE_URL"] = f"sqlite:///{workdir / 'central.db'}"
    env["CENTRAL_DATA_KEY"] = base64.b64encode(os.urandom(32)).decode()
    _central("migrate", env=env)
    _central("kiosk-add", KIOSK_ID, "--public-key", kiosk.public_key_b64(), env=env)
    with serve_central(env, workdir / "central.log") as url:
        yield url


def run(workdir: Path) -> dict[str, int]:
    """Run the demo in ``workdir`` (recreated); returns the outcome counts."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rng = random.Random(2026)
    people = identities(find_faces_dir())
    kiosk = KioskIdentity.generate(KIOSK_ID)
    counts: Counter[str] = Counter()
    with central_service(workdir, kiosk) as url, CentralClient(url, kiosk) as client:
        plan = [(i, photos[0]) for i, photos in enumerate(people.values())]
        # one person comes back with a different photo: the registry must catch it
        again = next(name for name, photos in people.items() if len(photos) > 1)
        plan.append((list(people).index(again), people[again][1]))
        for i, path in plan:
            started = time.perf_counter()
            jpeg, templates = capture(path)
            packet = build_packet(KIOSK_ID, person(i, rng), templates, jpeg)
            st = client.submit(packet)
            if not st.final:
                st = client.wait_final(packet.packet_id)
            counts[st.status.value] += 1
            print(
                f"{path.relative_to(path.parents[1]).as_posix():45s} -> {st.status.value:12s} "
                f"IDCS={st.idcs or '-':10s} receipt={st.receipt_number} "
                f"({(time.perf_counter() - started) * 1e3:.0f} ms)",
                flush=True,
            )
    return {
        "enrolled": sum(counts.values()),
        "issued": counts["issued"],
        "duplicates": counts["duplicate"],
        "adjudication": counts["adjudication"],
    }


def main(workdir: Path | None = None) -> int:
    """Entry point of ``kiosk demo``: prints the summary JSON as the last stdout line."""
    started = time.perf_counter()
    try:
        summary = run(workdir or Path("var/demo"))
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"demo finished in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(json.dumps(summary))
    return 0
