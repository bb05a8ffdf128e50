"""ID-card benchmark: time from card present to DocumentData through the real PC/SC stack.

Starts pcscd (vsmartcard's vpcd driver) in the foreground unless one already runs, places an
emulated eMRTD (TD1 card, DG1 + 480x360 JPEG DG2 of ~15 KB + DG11, EF.SOD signed by a test
CSCA/DS) on the virtual reader and reads it N times, split by phase (BAC, each file, parsing,
passive authentication). Baseline in the same run: short READ BINARY chunks (223 bytes, what
every reader supports) against extended-length reads (4 KB per command).

The emulated chip answers at once: real contactless chips add ~5-50 ms per command (ISO 14443
at 106-848 kbit/s), so these figures are the kiosk's own overhead, a lower bound.
Run: .venv/bin/python bench/bench_card.py [reads]
"""

from __future__ import annotations

import gc
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from devices import card
from devices.icao import lds
from devices.simulation import emrtd

TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def _pcscd() -> subprocess.Popen[bytes] | None:
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", emrtd.VPCD_PORT)) == 0:
            return None
    proc = subprocess.Popen(
        [shutil.which("pcscd") or "/usr/sbin/pcscd", "--foreground", "--error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(150):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", emrtd.VPCD_PORT)) == 0:
                return proc
        time.sleep(0.1)
    raise SystemExit("pcscd did not start")


def main(reads: int = 50) -> None:
    photo = cv2.resize(cv2.imread(str(sorted(FACES.glob("*.jpg"))[0])), (360, 480))
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    pki = emrtd.DocumentPKI.create()
    doc = emrtd.issue_document(TD1, jpeg, (360, 480), pki, full_name="ERIKSSON<<ANNA MARIA")
    trust = lds.TrustStore([pki.csca])
    proc = _pcscd()
    try:
        chip = emrtd.EmulatedChip(doc)
        with emrtd.VirtualCard(chip):
            reader = card.wait_for_card("Virtual PCD 00 00", timeout=10)
            print(f"DG2 {len(doc.files[0x0102])} bytes, EF.SOD {len(doc.files[0x011D])} bytes")
            medians = {}
            for label, chunk in (("short APDUs (223 B)", 0xDF), ("extended (4 KB)", 4000)):
                runs = []
                before = len(chip.commands)
                for _ in range(reads):
                    d = card.read_document(reader, doc.key, trust, chunk=chunk)
                    assert d.passive_authentication.valid
                    runs.append(d.timings)
                per_read = (len(chip.commands) - before) / reads
                phases = {k: statistics.median(r[k] for r in runs) * 1e3 for k in runs[0]}
                medians[label] = phases["total"]
                print(
                    f"{label}: {per_read:.0f} commands per read; median ms: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                )
            base, ext = medians.values()
            print(f"extended-length reads: {base / ext:.2f}x faster than short chunks")
    finally:
        gc.collect()  # pyscard releases its PC/SC contexts on collection: before pcscd goes
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
