"""ID-card benchmark: time from card present to DocumentData through the real PC/SC stack.

Starts pcscd (vsmartcard's vpcd driver) in the foreground unless one already runs, places an
emulated eMRTD (TD1 card, DG1 + 480x360 JPEG DG2 of ~15 KB + DG11, EF.SOD signed by a test
CSCA/DS) on the virtual reader and reads it N times, split by phase (EF.CardAccess, access
control, each file, Chip / Active Authentication, parsing, passive authentication).

Two comparisons in the same run, on the same DG2:
- the baseline, a BAC chip (3DES secure messaging), against a CNIE-2020 chip read with its
  CAN (PACE-ECDH-GM-AES-128 on brainpoolP256r1, AES secure messaging, Chip Authentication on
  brainpoolP256r1, Active Authentication ECDSA), and the same chip without CA/AA;
- short READ BINARY chunks (223 bytes, what every reader supports) against extended-length
  reads (4 KB per command).

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


def _read(reader, key, trust, chunk, reads, chip) -> tuple[dict[str, float], float]:
    """Median ms per phase over ``reads`` reads, and commands per read."""
    runs = []
    before = len(chip.commands)
    for _ in range(reads):
        d = card.read_document(reader, key, trust, chunk=chunk)
        assert d.passive_authentication.valid
        runs.append(d.timings)
    phases = {k: statistics.median(r.get(k, 0.0) for r in runs) * 1e3 for k in runs[-1]}
    return phases, (len(chip.commands) - before) / reads


def main(reads: int = 50) -> None:
    photo = cv2.resize(cv2.imread(str(sorted(FACES.glob("*.jpg"))[0])), (360, 480))
    jpeg = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    pki = emrtd.DocumentPKI.create()
    name = "ERIKSSON<<ANNA MARIA"
    bac = emrtd.issue_document(TD1, jpeg, (360, 480), pki, full_name=name)
    cnie = emrtd.issue_document(
        TD1, jpeg, (360, 480), pki, full_name=name, can="123456", **emrtd.CNIE
    )
    plain_pace = dict(emrtd.CNIE, chip_authentication=None, active_authentication=None)
    pace_only = emrtd.issue_document(
        TD1, jpeg, (360, 480), pki, full_name=name, can="123456", **plain_pace
    )
    trust = lds.TrustStore([pki.csca])
    proc = _pcscd()
    try:
        print(f"DG2 {len(bac.files[0x0102])} bytes, EF.SOD {len(bac.files[0x011D])} bytes")
        medians = {}
        for label, doc, key, chunk in (
            ("BAC, short APDUs (223 B)", bac, bac.key, 0xDF),
            ("BAC, extended (4 KB)", bac, bac.key, 4000),
            ("PACE-CAN, extended (4 KB)", pace_only, pace_only.can_key, 4000),
            ("PACE-CAN + CA + AA, extended", cnie, cnie.can_key, 4000),
            ("PACE-CAN + CA + AA, short APDUs", cnie, cnie.can_key, 0xDF),
        ):
            chip = emrtd.EmulatedChip(doc)
            with emrtd.VirtualCard(chip):
                reader = card.wait_for_card("Virtual PCD 00 00", timeout=10)
                _read(reader, key, trust, chunk, 2, chip)  # warm-up
                phases, commands = _read(reader, key, trust, chunk, reads, chip)
            medians[label] = phases["total"]
            total = phases["total"]
            print(
                f"{label}: {commands:.0f} commands per read; median {total:.1f} ms: "
                + ", ".join(
                    f"{k} {v:.1f} ({100 * v / total:.0f} %)"
                    for k, v in phases.items()
                    if k != "total"
                )
            )
        m = list(medians.values())
        print(f"extended-length reads: {m[0] / m[1]:.2f}x faster than short chunks (BAC)")
        print(f"PACE-CAN vs BAC (extended): {m[2] / m[1]:.2f}x the time")
        print(f"PACE-CAN + CA + AA vs BAC (extended): {m[3] / m[1]:.2f}x the time")
    finally:
        gc.collect()  # pyscard releases its PC/SC contexts on collection: before pcscd goes
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
