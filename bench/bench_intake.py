"""Intake under hostile load: what a flood or slow senders cost an honest kiosk and the registry.

    .venv/bin/python bench/bench_intake.py [honest_packets]

A registry (``central-api serve``, SQLite) in its own process, as in production.

1. Image-bomb flood: an honest kiosk sends ``honest_packets`` (default 12) packets one after the
   other (``Prefer: respond-async``: intake only) and its median answer time is measured alone,
   then beside four senders of a registered kiosk gone bad that post, as fast as they can,
   packets whose face image is a 786-byte JPEG 2000 declaring 4096x4096 (about 0.6 s of CPU to
   decode). Three registries: the intake gate's refusal throttle on (the default), off (only
   the header check before decoding), and the baseline of the same run: no flood.
2. Slow bodies: 200 connections each declare 1.9 MB, send 1 MB and stall. The registry's RSS
   before, while they hang, and after they are dropped.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import httpx  # noqa: E402
from _evidence import demographics, evidence  # noqa: E402  (bench/, beside this script)
from PIL import Image  # noqa: E402

from biometrics import face  # noqa: E402
from kiosk import demo  # noqa: E402
from kiosk.client import CentralClient, KioskIdentity, PacketRefused, build_packet  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def registry(
    work: Path, kiosks: list[KioskIdentity], **settings: str
) -> Iterator[tuple[int, str, tuple[bytes, bytes]]]:
    """A fresh registry process; yields its pid, URL and the kiosks' view of its keys."""
    work.mkdir(parents=True, exist_ok=True)
    env, keys = demo.registry_env(work)
    env.update({f"CENTRAL_{k.upper()}": v for k, v in settings.items()})
    demo._central("migrate", env=env)
    for k in kiosks:
        demo._central("kiosk-add", k.kiosk_id, "--public-key", k.public_key_b64(), env=env)
    port = free_port()
    cmd = [sys.executable, "-m", "central_api.cli", "--log-level", "warning", "serve"]
    with (work / "server.log").open("ab") as log:
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield proc.pid, url, keys
    finally:
        proc.terminate()
        proc.wait(30)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def honest_packets(kiosk: KioskIdentity, n: int) -> list[bytes]:
    faces = demo.identities(demo.find_faces_dir())
    photos = [p for ps in faces.values() for p in ps][:n]
    out = []
    for i, path in enumerate(photos):
        img = cv2.imread(str(path))
        scale = 640 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale)
        jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        tpl = face.encode(face.decode_image(jpeg), thresholds=None)
        packet = build_packet(
            kiosk.kiosk_id, demographics(f"AB{i:06d}"), [tpl], jpeg, **evidence(i)
        )
        out.append(packet.model_dump_json().encode())
    return out


def bomb_packet(kiosk: KioskIdentity, honest: bytes) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (4096, 4096)).save(buf, "JPEG2000", irreversible=True, quality_layers=[400])
    d = json.loads(honest)
    d["kiosk_id"], d["face_image"] = kiosk.kiosk_id, base64.b64encode(buf.getvalue()).decode()
    print(f"  bomb: {len(buf.getvalue())} bytes of JPEG 2000 declaring 4096x4096")
    return json.dumps(d).encode()


def median_ms(client: CentralClient, packets: list[bytes]) -> float:
    times = []
    for p in packets:
        t = time.perf_counter()
        client.submit(p, wait=False)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def send_bombs(
    url: str,
    rogue: KioskIdentity,
    keys: tuple[bytes, bytes],
    bomb: bytes,
    stop: threading.Event,
    sent: list[int],
) -> None:
    """Post the bomb as fast as one thread can until ``stop``; counts in ``sent[0]``."""
    with CentralClient(url, rogue, *keys, retries=0) as c:
        while not stop.is_set():
            with contextlib.suppress(PacketRefused, httpx.HTTPError):
                c.submit(bomb, wait=False)
            sent[0] += 1


def flood(n: int) -> None:
    honest, rogue = (
        KioskIdentity.generate("KIOSK-HONEST-01"),
        KioskIdentity.generate("KIOSK-ROGUE-66"),
    )
    packets = honest_packets(honest, 2 * n)
    bomb = bomb_packet(rogue, packets[0])
    results = {}
    for name, settings in (
        ("gate throttle on (default)", {}),
        ("header check only", {"refusals_per_minute": "1000000"}),
    ):
        with (
            tempfile.TemporaryDirectory() as tmp,
            registry(Path(tmp), [honest, rogue], **settings) as (
                _pid,
                url,
                keys,
            ),
        ):
            client = CentralClient(url, honest, *keys, retries=0)
            median_ms(client, packets[:2])  # warm-up
            alone = median_ms(client, packets[2 : 2 + n // 2])
            stop, sent = threading.Event(), [0]

            args = (url, rogue, keys, bomb, stop, sent)
            threads = [threading.Thread(target=send_bombs, args=args) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(1)
            t0 = time.perf_counter()
            flooded = median_ms(client, packets[2 + n // 2 : 2 + n])
            rate = sent[0] / (time.perf_counter() - t0 + 1)
            stop.set()
            for t in threads:
                t.join()
            client.close()
        results[name] = (alone, flooded, rate)
        print(
            f"  {name:28s} honest median {alone:6.0f} ms alone, {flooded:6.0f} ms beside 4 bomb "
            f"senders ({rate:.0f} bombs/s): {flooded / alone:.2f}x"
        )


def slow_bodies() -> None:
    kiosk = KioskIdentity.generate("KIOSK-FES-01")
    with (
        tempfile.TemporaryDirectory() as tmp,
        registry(Path(tmp), [kiosk], body_idle_seconds="2") as (pid, url, _),
    ):
        port = int(url.rsplit(":", 1)[1])
        base = rss_mib(pid)
        head = (
            "POST /v1/enrolments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Kiosk-Id: {kiosk.kiosk_id}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1900000\r\n\r\n"
        ).encode()
        socks = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.sendall(head + b"x" * 1_000_000)
            socks.append(s)
        time.sleep(1.5)
        peak = rss_mib(pid)
        time.sleep(3)
        for s in socks:
            s.close()
        time.sleep(1.5)
        after = rss_mib(pid)
        print(
            f"  RSS {base:.0f} MiB before, {peak:.0f} MiB with 200 slow bodies hanging "
            f"(+{peak - base:.0f}), {after:.0f} MiB after (+{after - base:.0f})"
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    os.environ.setdefault("RNP_FACES_DIR", str(ROOT.parent / "shared" / "data" / "faces"))
    print("1. an honest kiosk beside an image-bomb flood")
    flood(n)
    print("2. slow bodies")
    slow_bodies()


if __name__ == "__main__":
    main()
