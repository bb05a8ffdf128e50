"""SBI capture benchmark: what the MOSIP SBI protocol costs a fingerprint capture.

Measures, in one run, the latency of a capture through :mod:`devices.sbi` against the
simulated SBI device (its own process, 127.0.0.1, real HTTP): the device composes the slap
from synthetic prints, segments it, encodes each finger as an ISO/IEC 19794-4 record (JPEG
2000 lossless) and signs it (RS256 JWS); the client verifies every signature and the
certificate chain, the hash chain, and decodes the records. Against it, the in-process
simulated reader (``SimulatedFingerprintReader(person, prefetch=False).capture``), which makes
the same synthetic impressions and nothing else. Both with the master prints made beforehand
(the in-process reader's ``synthetic.master_fingerprint`` is memoised for the run), so both
measure a capture, not master synthesis. A slap in-process is its four fingers one after the
other (that reader has no slap).

Figures are the kiosk's own overhead: a real device adds the time a person takes and its
sensor's exposure. Run: .venv/bin/python bench/bench_sbi.py [captures]
"""

from __future__ import annotations

import functools
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from biometrics import synthetic
from devices import sbi
from devices.simulation.fingerprint import SimulatedFingerprintReader
from devices.simulation.sbi_device import make_device_pki, master_print

PERSON = 5
RIGHT = (2, 3, 4, 5)


def _free_port() -> int:
    for port in sbi.SBI_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("no free port in 4501-4600")


def _device(folder: Path, port: int) -> subprocess.Popen[bytes]:
    _, key, cert = make_device_pki(folder / "pki")
    command = [sys.executable, "-m", "devices.simulation.sbi_device", "--port", str(port)]
    command += ["--key", str(key), "--cert", str(cert), "--cache", str(folder / "masters")]
    proc = subprocess.Popen(command)
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the simulated SBI device did not start")


def _times(run: Callable[[], object], n: int) -> list[float]:
    run()  # warm-up: imports, codecs, connections
    out = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        out.append((time.perf_counter() - start) * 1000)
    return out


def _row(name: str, ms: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(ms), float(np.percentile(ms, 95))
    print(f"  {name:<44} {median:8.1f} {p95:8.1f}")
    return median, p95


def main(captures: int = 10) -> None:
    """Time ``captures`` single-finger and four-finger captures each way; print the ratio."""
    folder = Path(tempfile.mkdtemp(prefix="bench-sbi-"))
    port = _free_port()
    proc = _device(folder, port)
    try:
        reader = SimulatedFingerprintReader(PERSON)  # only for its finger seeds
        seeds = [reader.finger_seed(p) for p in RIGHT]
        # master prints: made once here, read by the device from the shared cache
        masters = {s: master_print(s, folder / "masters") for s in seeds}
        original = synthetic.master_fingerprint

        @functools.wraps(original)
        def memoised(seed: int, *args: object, **kwargs: object) -> synthetic.MasterFingerprint:
            if not args and not kwargs and seed in masters:
                return masters[seed]
            return original(seed, *args, **kwargs)  # type: ignore[arg-type]

        synthetic.master_fingerprint = memoised
        settings = {"person": PERSON, "warm": list(RIGHT), "wait": True}
        httpx.post(f"http://127.0.0.1:{port}/simulate", json=settings, timeout=120)

        print(
            f"SBI capture latency, {captures} captures each (ms): RCAPTURE over HTTP (slap "
            "composed, segmented, JPEG 2000 ISO/IEC 19794-4 records, RS256 JWS per finger; "
            "client verifies signatures, certificate chain, hash chain, decodes) vs the "
            "in-process simulated reader. Master prints made beforehand."
        )
        print(f"  {'':<44} {'median':>8} {'p95':>8}")
        sbi_reader = sbi.SBIFingerprintReader(port, trust_dir=folder / "pki", timeout=60)
        local = SimulatedFingerprintReader(PERSON, prefetch=False)
        try:
            one_sbi = _row("one finger, SBI", _times(lambda: sbi_reader.capture(2), captures))
            one_local = _row("one finger, in-process", _times(lambda: local.capture(2), captures))
            slap_sbi = _row(
                "four-finger slap, SBI", _times(lambda: sbi_reader.capture_slap(RIGHT), captures)
            )
            slap_local = _row(
                "four fingers, in-process (one by one)",
                _times(lambda: local.capture_slap(RIGHT), captures),
            )
        finally:
            sbi_reader.close()
            local.close()
        print(
            f"  SBI / in-process (median): one finger {one_sbi[0] / one_local[0]:.1f}x, "
            f"slap {slap_sbi[0] / slap_local[0]:.1f}x"
        )
    finally:
        synthetic.master_fingerprint = original
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
