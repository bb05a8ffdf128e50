"""What the tests share besides fixtures (those are in conftest.py): the test registry's keys
and settings, packets and evidence that satisfy the intake policy, database look-ups, and a
registry server in its own process."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from biometrics import fingerprint as fp
from central_api.config import Settings
from central_api.db import make_engine, make_session_factory, transaction
from central_api.enrolment.schemas import (
    CaptureInfo,
    Demographics,
    Document,
    EnrolmentPacket,
    FingerprintRecord,
    read_message,
    seal,
)
from devices.bus import DeviceClient
from devices.daemon import DaemonConfig, DeviceDaemon
from kiosk.client import KioskIdentity, build_packet

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("RNP_FACES_DIR", ROOT.parent / "shared" / "data" / "faces"))
# FVC2004 "B" sets: real prints, with a commercial SDK's ISO 19794-2 records of the same images
FVC2004 = Path(
    os.environ.get("RNP_FVC_DIR", ROOT.parent / "shared" / "data" / "fingerprints" / "fvc2004")
)
PG_URL = os.environ.get(
    "RNP_TEST_POSTGRES_URL", "postgresql+psycopg://rnp:rnp@127.0.0.1:5432/rnp_test"
)
KEY = base64.b64encode(b"k" * 32).decode()
PACKET_KEY = X25519PrivateKey.from_private_bytes(b"p" * 32)
PACKET_PUB = PACKET_KEY.public_key().public_bytes_raw()
PACKET_KEY_B64 = base64.b64encode(PACKET_KEY.private_bytes_raw()).decode()
SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(b"s" * 32)
SIGNING_PUB = SIGNING_KEY.public_key().public_bytes_raw()
SIGNING_KEY_B64 = base64.b64encode(SIGNING_KEY.private_bytes_raw()).decode()
REGISTRY_ENV = {  # what a registry process needs (tests add the database URL)
    "CENTRAL_DATA_KEY": KEY,
    "CENTRAL_PACKET_KEY": PACKET_KEY_B64,
    "CENTRAL_SIGNING_KEY": SIGNING_KEY_B64,
}


def demographics(**overrides: object) -> Demographics:
    fields: dict[str, object] = {
        "surname_latin": "El Amrani",
        "given_names_latin": "Youssef",
        "surname_arabic": "العمراني",
        "given_names_arabic": "يوسف",
        "date_of_birth": date(1988, 4, 12),
        "place_of_birth": "Fès",
        "sex": "M",
        "nationality": "MAR",
        "address": "12 Rue Talaa Kebira, Fès",
        "document": Document(type="CNIE", number="CD123456", issuing_country="MAR"),
    }
    fields.update(overrides)
    return Demographics(**fields)


def fingers(seed: int = 0) -> list[FingerprintRecord]:
    """Ten ISO/IEC 19794-2 finger templates of random minutiae (cheap, deterministic): what the
    intake policy asks of a packet, for tests that are not about fingerprints."""
    rng = np.random.default_rng(seed)
    out = []
    for position in range(1, 11):
        minutiae = tuple(
            fp.Minutia(
                int(rng.integers(20, 380)),
                int(rng.integers(20, 480)),
                float(rng.uniform(0, 6.28)),
                "ending" if rng.random() < 0.5 else "bifurcation",
                60,
            )
            for _ in range(40)
        )
        t = fp.FingerprintTemplate(400, 500, minutiae, quality=70, position=position)
        out.append(FingerprintRecord(position=position, quality=70, data=t.to_iso19794_2()))
    return out


def capture(**overrides: object) -> CaptureInfo:
    """Capture evidence that satisfies the default intake policy (chip read and verified,
    live face of good quality matching the chip photo), changed by ``overrides``."""
    fields: dict[str, object] = {
        "document_source": "chip",
        "passive_authentication": "valid",
        "face_quality": 80,
        "face_liveness": True,
        "face_document_similarity": 0.95,
        "language": "fr",
    }
    fields.update(overrides)
    return CaptureInfo(**fields)


def evidence(person: int | str | bytes = 0, **overrides: object) -> dict[str, object]:
    """``build_packet`` keywords for a packet that satisfies the intake policy, with the
    fingers of ``person`` (a seed, or a name or photo it is drawn from): the registry's dedup
    finds two packets with the same fingers to be one person."""
    if not isinstance(person, int):
        person = zlib.crc32(person.encode() if isinstance(person, str) else person)
    return {"capture": capture(**overrides), "fingerprints": fingers(person)}


class Registry:
    """A running app (TestClient) plus a registered kiosk and a packet factory."""

    def __init__(self, client: TestClient, kiosk: KioskIdentity) -> None:
        self.client, self.kiosk = client, kiosk
        self.app = getattr(client, "app", None)  # None: a live server over httpx

    def packet(self, templates: list[np.ndarray], image: bytes, **kw: object) -> EnrolmentPacket:
        """A packet of this kiosk that satisfies the intake policy unless ``kw`` change it.
        Its fingers are drawn from the photo (one photo, one person's fingers): a test that
        means two photos to be one person passes ``fingerprints`` of one seed."""
        demo = kw.pop("demographics", None) or demographics()
        kw = {**evidence(image), **kw}
        return build_packet(self.kiosk.kiosk_id, demo, templates, image, **kw)  # type: ignore[arg-type]

    def post(self, body: bytes, signer: KioskIdentity | None = None, **seal_kw: object):  # type: ignore[no-untyped-def]
        """POST ``body`` (packet JSON, valid or not) sealed by ``signer`` as a kiosk does."""
        signer = signer or self.kiosk
        sealed = seal(body, signer.kiosk_id, signer.key.sign, PACKET_PUB, **seal_kw)  # type: ignore[arg-type]
        return self.post_raw(sealed, kiosk_id=signer.kiosk_id)

    def post_raw(self, envelope: bytes, kiosk_id: str | None = None, **headers: str):  # type: ignore[no-untyped-def]
        h = {
            "content-type": "application/json",
            "x-kiosk-id": kiosk_id or self.kiosk.kiosk_id,
            **headers,
        }
        return self.client.post("/v1/enrolments", content=envelope, headers=h)

    def get(self, packet_id: object, signer: KioskIdentity | None = None, ts: int | None = None):  # type: ignore[no-untyped-def]
        """Signed status read, as the kiosk does it."""
        return self.read(f"/v1/enrolments/{packet_id}", signer, ts)

    def read(self, path: str, signer: KioskIdentity | None = None, ts: int | None = None):  # type: ignore[no-untyped-def]
        """A GET signed as a kiosk signs its reads."""
        signer = signer or self.kiosk
        ts = int(time.time()) if ts is None else ts
        return self.client.get(
            path,
            headers={
                "X-Kiosk-Id": signer.kiosk_id,
                "X-Kiosk-Timestamp": str(ts),
                "X-Kiosk-Signature": signer.sign(read_message(path, ts)),
            },
        )

    def submit(self, packet: EnrolmentPacket):  # type: ignore[no-untyped-def]
        return self.post(packet.model_dump_json().encode())


def settings_for(url: str, **overrides: object) -> Settings:
    """The test registry's settings; no tarpit unless a test asks for one (it would only slow
    the tests that are about refusals)."""
    overrides.setdefault("refusal_delay_seconds", 0)
    return Settings(
        database_url=url,
        data_key=KEY,
        packet_key=PACKET_KEY_B64,
        signing_key=SIGNING_KEY_B64,
        **overrides,
    )


@contextlib.contextmanager
def registry_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the registry database at ``url``, audited as the server's are."""
    engine = make_engine(url)
    try:
        yield make_session_factory(engine, base64.b64decode(KEY))
    finally:
        engine.dispose()


def register_kiosk(url: str, kiosk: KioskIdentity) -> None:
    from central_api.enrolment.service import register_kiosk as reg

    with registry_sessions(url) as factory, transaction(factory) as s:
        reg(s, kiosk.kiosk_id, base64.b64decode(kiosk.public_key_b64()), actor="test")


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def count(url: str, table: str, where: str = "1=1") -> int:
    """Rows in ``table`` of the database at ``url`` (optionally filtered)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sql = f"SELECT count(*) FROM {table} WHERE {where}"
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_cli(*args: str, env: dict[str, str]) -> None:
    """Run ``central-api ARGS`` (migrate, kiosk-add...) with ``env``; fails on an error."""
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def registry_env(db_url: str, **settings: str) -> dict[str, str]:
    """The environment of a registry process on ``db_url`` with the test keys; ``settings``
    are ``CENTRAL_*`` variables by their lower-case suffix."""
    return {
        **os.environ,
        **REGISTRY_ENV,
        "CENTRAL_DATABASE_URL": db_url,
        **{f"CENTRAL_{k.upper()}": v for k, v in settings.items()},
    }


@contextlib.contextmanager
def serve_registry(
    env: dict[str, str], log: Path, port: int | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``central-api serve`` in its own process with ``env``; yields it and its URL once it
    answers its health check, and stops it at the end."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "serve"]
    with log.open("ab") as out:
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@contextlib.contextmanager
def serve_daemon(config: DaemonConfig) -> Iterator[tuple[DeviceDaemon, DeviceClient]]:
    """A device daemon served from a thread of this process, and a client of it."""
    daemon = DeviceDaemon(config)
    thread = threading.Thread(target=daemon.serve, daemon=True)
    thread.start()
    assert daemon.ready.wait(10)
    try:
        yield daemon, DeviceClient(config.socket_dir)
    finally:
        daemon.stop()
        thread.join(10)
