"""A simulated MOSIP SBI device service in its own process (tests and the demo only): the
real protocol (:mod:`devices.sbi` documents it), a 4-4-2 finger slap device and a face device
behind one port, everything it sends signed with its device key.

Run it::

    python -m devices.simulation.sbi_device --port 4501 --key device.key --cert device.pem \\
        [--seed 0] [--photo FACE.jpg] [--env Developer] [--cache DIR] [--verbose]

``make_device_pki(folder)`` writes a device-provider CA, a device key and its certificate
(the CA certificate goes into the kiosk's trust folder, ``sbi-ca/``). ``--cache DIR`` keeps
the master prints on disk (:func:`master_print`): a test or bench that makes them too, or the
next run, does not pay a second per finger again.

Devices (one port, one ``MOSIPDISC`` / ``MOSIPDINFO`` answer for both):

- ``deviceId`` "1": Finger, Slap, deviceSubId 1 (left slap), 2 (right slap), 3 (two thumbs).
  An RCAPTURE composes the slap from synthetic prints (``biometrics.synthetic``: the
  simulated person's finger ``position`` is the master print
  ``SimulatedFingerprintReader(person).finger_seed(position)``, its n-th capture since the
  person stepped up is impression ``100 * visit + n``), only the fingers asked for on the
  platen, then segments it with :func:`devices.sbi.segment_slap` as a vendor's firmware does
  and signs one ISO/IEC 19794-4 record per finger (JPEG 2000 lossless). ``qualityScore``
  stands in for NFIQ 2 (which costs a third of a second per finger): ~78 for an ordinary
  impression, lower for the synthetic hard cases (dry, wet, smudged, partial, distorted).
- ``deviceId`` "2": Face, Full face, deviceSubId 0. RCAPTURE auto-captures from frames of
  the person's photo (:class:`devices.simulation.camera.SimulatedCamera`) and signs an
  ISO/IEC 19794-5:2011 record (JPEG 2000); STREAM sends those frames as M-JPEG. Without a
  photo nobody stands there: RCAPTURE answers 101.

The test's hand, ``POST /simulate`` (only this simulation has it), takes a JSON object of
any of: ``person`` (int) and ``visit`` (int): who stands there (resets the capture counts);
``photo`` (path): their face; ``missing`` (list of positions): fingers they do not have;
``warm`` (list of positions): make those master prints now, in the background (``wait``:
true answers only when they are made); ``busy`` (bool): the device reports Busy (111);
``delay_ms``: the firmware takes that long before capturing (answering 701 when that passes
the request's timeout); ``unplug_after_ms``: the next capture drops its connection after that
long, and the device then drops every connection until ``plug``: true; ``tamper`` (bool): the
next capture's signed data is altered after signing; ``malformed``: the next capture answers
``not_json``, ``truncated_body`` (fewer bytes than its Content-Length), ``truncated_bio`` (a
cut ISO record, signed), ``bad_hash`` or ``wrong_transaction``.

Nothing here logs biometric data: ``--verbose`` logs methods, paths and status codes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import httpx
import jwt
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from biometrics import synthetic
from biometrics.fingerprint import FingerImage
from devices.exceptions import DeviceError
from devices.fingerprint import FingerprintReaderError
from devices.sbi import FINGER_NAMES, PURPOSE, SLAP_FINGERS, SPEC_VERSION, segment_slap

SERVICE_VERSION: Final = "1.0"
FIRMWARE: Final = "sim-1.0"
ENVIRONMENTS: Final = ("Staging", "Developer", "Pre-Production", "Production")
FINGER_ID, FACE_ID = "1", "2"
_POSITION_OF: Final = {name: p for p, name in FINGER_NAMES.items()}
_HAND: Final[dict[int, Literal["left", "right", "thumbs"]]] = {1: "left", 2: "right", 3: "thumbs"}
_TRANSACTION = re.compile(r"[A-Za-z0-9-]{4,50}")
_MAX_BODY = 1024 * 1024
_METHODS = "OPTIONS, RCAPTURE, CAPTURE, MOSIPDINFO, MOSIPDISC, STREAM, GET, POST"
_BOUNDARY = "mosipframe"
# the spec's error codes, and the mock MDS's vendor codes this device also answers
MESSAGES: Final[dict[str, str]] = {
    "0": "Success",
    "100": "Device not registered",
    "101": "Unable to detect a biometric object",
    "102": "Technical error during extraction",
    "106": "Device not found",
    "109": "Requested number of biometric (Finger/IRIS) not supported",
    "110": "Device is not ready",
    "111": "Device is busy",
    "112": "Invalid Transaction ID",
    "114": "Device Type Mismatch('Finger', 'Iris', 'Face')",
    "115": "Env values Mismatch('Staging', 'Developer', 'Pre-Production', 'Production')",
    "121": "Purpose Value Mismatch('Registration', 'Auth')",
    "500": "Invalid URL",
    "502": "Biometric Type values Mismatch('Biometric Device', 'Finger', 'Face', 'Iris')",
    "503": "Devices are not Connected, please connect devices",
    "605": "Device is not connected or not Registered for the deviceId given in Livestream",
    "701": "RCapture Failed because Capture Timeout has happened",
    "705": "Device is not connected or not Registered for the deviceId given in RCapture",
    "710": "RCapture unknown error",
    "809": "Auth Capture request can not be done for Registration Devices",
}
# qualityScore by the synthetic impression's condition (a stand-in for NFIQ 2)
_QUALITY: Final = {
    "normal": 78,
    "distorted": 55,
    "partial": 42,
    "dry": 38,
    "wet": 36,
    "smudged": 33,
}


# ----------------------------------------------------------------------------------- PKI
def make_device_pki(
    folder: str | Path, *, algorithm: Literal["RS256", "ES256"] = "RS256", valid_days: int = 365
) -> tuple[Path, Path, Path]:
    """A device-provider CA and a device key with its certificate (signed by that CA), in
    ``folder``: ``ca.pem``, ``device.key`` (PKCS #8, unencrypted, mode 0600), ``device.pem``.
    RS256: RSA 2048; ES256: EC P-256. A negative ``valid_days`` makes a device certificate
    that expired that many days ago. Returns (CA certificate, device key, device
    certificate) paths. The CA's own key is not kept."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def new_key() -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        if algorithm == "ES256":
            return ec.generate_private_key(ec.SECP256R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    now = dt.datetime.now(dt.UTC)
    ca_key, device_key = new_key(), new_key()
    tag = uuid.uuid4().hex[:8]
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RNP Test Device Provider"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"RNP Test Device Provider CA {tag}"),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    start, end = (
        (now - dt.timedelta(days=1), now + dt.timedelta(days=valid_days))
        if valid_days >= 0
        else (now + dt.timedelta(days=valid_days - 30), now + dt.timedelta(days=valid_days))
    )
    device = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RNP Test Device Provider"),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"RNPSIM device {tag}"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(device_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, key_path, cert_path = out / "ca.pem", out / "device.key", out / "device.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(device.public_bytes(serialization.Encoding.PEM))
    pem = device_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out_file:
        os.fchmod(out_file.fileno(), 0o600)  # an existing file keeps its mode otherwise
        out_file.write(pem)
    return ca_path, key_path, cert_path


def sign_jws(
    payload: bytes,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> str:
    """A compact JWS of ``payload`` as the spec signs: RS256 (or ES256 for an EC key), header
    ``typ`` JWT and ``x5c`` [the signing certificate, base64 DER]."""
    algorithm = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
    der = certificate.public_bytes(serialization.Encoding.DER)
    headers = {"typ": "JWT", "x5c": [base64.b64encode(der).decode("ascii")]}
    return jwt.PyJWS().encode(payload, key, algorithm=algorithm, headers=headers)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------ the slap
def compose_slap(
    fingers: Sequence[np.ndarray | None],
    seed: int = 0,
    hand: Literal["left", "right", "thumbs"] | None = None,
) -> np.ndarray:
    """A 500-dpi slap image as a 4-4-2 reader's platen sees it (1500 x 1600, dark ridges on
    light): ``fingers`` (fingertip impressions, left to right; None: an empty slot) side by
    side, four for a hand, two for the thumbs, each with the next phalanx below its first
    crease, fanned out and slightly rotated, on a hand's arc (``hand`` by default: "right"
    for four, "thumbs" for two)."""
    n = len(fingers)
    if n not in (2, 4):
        raise ValueError("a slap has 4 finger slots or 2 thumb slots")
    hand = hand or ("thumbs" if n == 2 else "right")
    rng = np.random.default_rng(seed)
    height, width = 1500, 1600
    canvas = np.clip(rng.normal(236.0, 2.5, (height, width)), 0, 255).astype(np.float32)
    if hand == "thumbs":
        tops, angles, xs = [300.0, 300.0], [-10.0, 10.0], [520.0, 1080.0]
    else:
        tops = [170.0, 70.0, 100.0, 250.0]  # index, middle, ring, little
        tops = tops if hand == "right" else tops[::-1]
        angles, xs = [8.0, 3.0, -2.0, -8.0], [200.0, 600.0, 1000.0, 1400.0]
    for i, print_ in enumerate(fingers):
        if print_ is None:
            continue
        local, (tx, ty) = _finger(print_, rng)
        angle = angles[i] + float(rng.uniform(-3, 3))
        cx = xs[i] + float(rng.uniform(-25, 25))
        cy = tops[i] + ty + float(rng.uniform(-20, 20))
        m = np.asarray(cv2.getRotationMatrix2D((tx, ty), angle, 1.0), np.float64)
        m[:, 2] += np.array([cx - tx, cy - ty])
        placed = cv2.warpAffine(
            local, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=(255.0,)
        )
        canvas = np.minimum(canvas, placed)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _finger(tip: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """One finger, upright: the fingertip impression where it touches the platen, a crease,
    the next phalanx (transverse ridges) below; and the tip's centre."""
    f = tip.astype(np.float32)
    h, w = f.shape
    # where it touches, faded out towards the impression's frame (no straight cut edges)
    ramp_y = np.clip(np.minimum(np.arange(h), np.arange(h)[::-1]) / 15.0, 0, 1)
    ramp_x = np.clip(np.minimum(np.arange(w), np.arange(w)[::-1]) / 15.0, 0, 1)
    touch = _contact(f) * np.minimum.outer(ramp_y, ramp_x).astype(np.float32)
    top = 255.0 - touch * (255.0 - f)
    gap, ph = int(rng.integers(50, 76)), int(rng.integers(200, 261))
    yy, xx = np.mgrid[0:ph, 0:w].astype(np.float32)
    wave = float(rng.uniform(30, 50))
    ridges = np.sin(2 * np.pi * (yy + 5 * np.sin(xx / wave)) / float(rng.uniform(8.5, 10)))
    texture = 232.0 - 120.0 * (ridges > 0.1) + rng.normal(0, 6, (ph, w)).astype(np.float32)
    area: np.ndarray = np.zeros((ph, w), np.float32)
    cv2.ellipse(area, (w // 2, ph // 2), (int(0.42 * w), int(0.45 * ph)), 0, 0, 360, 1.0, -1)
    area = cv2.GaussianBlur(area, (0, 0), 6)
    lower = 255.0 - area * (255.0 - texture)
    out = np.full((h + gap + ph, w), 255.0, np.float32)
    out[:h] = top
    out[h + gap :] = lower
    return out, (w / 2.0, h / 2.0)


def _contact(f: np.ndarray) -> np.ndarray:
    """Where an impression touches the platen (1) and where it is background (0), soft."""
    mean = cv2.blur(f, (9, 9))
    std = np.sqrt(np.maximum(cv2.blur(f * f, (9, 9)) - mean * mean, 0))
    soft = cv2.GaussianBlur(std, (0, 0), 6)
    return np.asarray(np.clip((soft - 12.0) / 12.0, 0, 1), np.float32)


# ------------------------------------------------------------------------- master prints
_masters: dict[int, Future[synthetic.MasterFingerprint]] = {}
_masters_lock = threading.Lock()
_MAX_MASTERS = 64
_cache: Path | None = None  # --cache: master prints kept on disk, shared between processes


def master_print(seed: int, cache: str | Path | None = None) -> synthetic.MasterFingerprint:
    """``synthetic.master_fingerprint(seed)`` (about a second of CPU), kept in ``cache``
    (a folder) when given, read from it when there: a test or a bench and the device process
    then make each master print once between them."""
    path = Path(cache) / f"master-{seed}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            ridges, kind = saved["ridges"], str(saved["finger_class"])
        if ridges.dtype == np.float32 and ridges.ndim == 2 and kind in synthetic.FINGER_CLASSES:
            return synthetic.MasterFingerprint(ridges, kind, seed)
    master = synthetic.master_fingerprint(seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.npz")
        np.savez(part, ridges=master.ridges, finger_class=np.array(master.finger_class))
        part.replace(path)  # atomic: a reader never sees half a file
    return master


def _master(seed: int) -> synthetic.MasterFingerprint:
    """The master print ``seed``, made once per process (and per ``--cache``)."""
    with _masters_lock:
        made = _masters.get(seed)
        mine = made is None
        if made is None:
            made = _masters[seed] = Future()
            done = [s for s, f in _masters.items() if f.done()]
            for old in done[: max(0, len(_masters) - _MAX_MASTERS)]:
                del _masters[old]
    if mine:
        try:
            made.set_result(master_print(seed, _cache))
        except Exception as exc:  # handed to whoever waits for this finger
            made.set_exception(exc)
    return made.result()


def _finger_seed(person: int, position: int) -> int:
    from devices.simulation.fingerprint import SimulatedFingerprintReader

    return SimulatedFingerprintReader(person).finger_seed(position)


# ---------------------------------------------------------------------------- the device
class _Drop(DeviceError):
    """Drop the connection without an answer (the device was unplugged)."""


@dataclass
class _State:
    person: int = 1
    visit: int = 0
    photo: str | None = None
    missing: set[int] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)
    faces: int = 0
    busy: bool = False
    unplugged: bool = False
    unplug_after_ms: int | None = None
    delay_ms: int = 0
    tamper: bool = False
    malformed: str | None = None


class SimulatedSBIDevice:
    """The device's behaviour, transport aside (the HTTP handler calls it)."""

    def __init__(
        self,
        port: int,
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        seed: int = 0,
        photo: str | None = None,
        env: str = "Developer",
        difficulty: float = 1.0,
    ) -> None:
        self.port, self.key, self.certificate = port, key, certificate
        self.seed, self.env, self.difficulty = seed, env, difficulty
        self.state = _State(photo=photo)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._capturing = {FINGER_ID: threading.Lock(), FACE_ID: threading.Lock()}
        self._warmer: threading.Thread | None = None
        self._serial = {FINGER_ID: "RNPSIMFS0001", FACE_ID: "RNPSIMFC0001"}

    # ------------------------------------------------------------------- descriptions
    def _digital_id(self, device_id: str) -> bytes:
        finger = device_id == FINGER_ID
        return json.dumps(
            {
                "serialNo": self._serial[device_id],
                "make": "RNP Simulation",
                "model": "SIM-SLAP-442" if finger else "SIM-FACE-1",
                "type": "Finger" if finger else "Face",
                "deviceSubType": "Slap" if finger else "Full face",
                "deviceProvider": "RNP Test Device Provider",
                "deviceProviderId": "RNP-TEST",
                "dateTime": _now(),
            }
        ).encode()

    def _describe(self, device_id: str, signed: bool) -> dict[str, Any]:
        busy = self.state.busy
        digital = self._digital_id(device_id)
        d: dict[str, Any] = {
            "deviceId": device_id,
            "deviceStatus": "Busy" if busy else "Ready",
            "certification": "L1",
            "serviceVersion": SERVICE_VERSION,
            "deviceSubId": ["1", "2", "3"] if device_id == FINGER_ID else ["0"],
            "callbackId": f"http://127.0.0.1:{self.port}/",
            "digitalId": sign_jws(digital, self.key, self.certificate)
            if signed
            else _b64url(digital),
            "deviceCode": self._serial[device_id],
            "specVersion": [SPEC_VERSION],
            "purpose": PURPOSE,
        }
        if signed:
            d |= {"firmware": FIRMWARE, "env": self.env}
        return d

    def discover(self, body: Any) -> list[dict[str, Any]]:
        """MOSIPDISC: the devices of the type asked for."""
        kind = str(body.get("type", "")).strip().lower() if isinstance(body, dict) else ""
        wanted = {
            "biometric device": [FINGER_ID, FACE_ID],
            "finger": [FINGER_ID],
            "face": [FACE_ID],
            "iris": [],
        }.get(kind)
        if wanted is None:
            return [{"error": _error("502")}]
        if not wanted:
            return [{"error": _error("503")}]
        out = []
        for device_id in wanted:
            d = self._describe(device_id, signed=False)
            d["error"] = _error("111" if self.state.busy else "0")
            out.append(d)
        return out

    def info(self) -> list[dict[str, Any]]:
        """MOSIPDINFO: each device's info, signed with the device key."""
        return [
            {
                "deviceInfo": sign_jws(
                    json.dumps(self._describe(device_id, signed=True)).encode(),
                    self.key,
                    self.certificate,
                ),
                "error": _error("111" if self.state.busy else "0"),
            }
            for device_id in (FINGER_ID, FACE_ID)
        ]

    # ------------------------------------------------------------------------ control
    def control(self, body: Any) -> dict[str, Any]:
        """``POST /simulate``: the test's hand (see the module docstring)."""
        if not isinstance(body, dict):
            raise ValueError("a JSON object is expected")
        with self.lock:
            s = self.state
            if "person" in body or "visit" in body:
                s.person = int(body.get("person", s.person))
                s.visit = int(body.get("visit", s.visit))
                s.attempts, s.faces = {}, 0
            if "photo" in body:
                s.photo = str(body["photo"]) if body["photo"] else None
            if "missing" in body:
                s.missing = {int(p) for p in body["missing"]}
            for flag in ("busy", "tamper"):
                if flag in body:
                    setattr(s, flag, bool(body[flag]))
            if body.get("plug"):
                s.unplugged, s.unplug_after_ms = False, None
            if "unplug_after_ms" in body:
                value = body["unplug_after_ms"]
                s.unplug_after_ms = None if value is None else max(0, int(value))
            if "delay_ms" in body:
                s.delay_ms = max(0, int(body["delay_ms"]))
            if "malformed" in body:
                kinds = ("not_json", "truncated_body", "truncated_bio", "bad_hash")
                if body["malformed"] not in (None, *kinds, "wrong_transaction"):
                    raise ValueError(f"malformed: one of {(*kinds, 'wrong_transaction')}")
                s.malformed = body["malformed"]
            person, photo = s.person, s.photo
        if "warm" in body:
            seeds = [_finger_seed(person, int(p)) for p in body["warm"]]
            self._warm(seeds, photo)
            if body.get("wait"):
                for seed in seeds:
                    _master(seed)
        return {"ok": True}

    def _warm(self, seeds: list[int], photo: str | None) -> None:
        def run() -> None:
            for seed in seeds:
                if self.stopping.is_set():
                    return
                _master(seed)
            if photo and not self.stopping.is_set():
                from biometrics.synthetic import face_model

                face_model(photo)

        # not a daemon thread: one stopped inside OpenCV at exit aborts the process
        self._warmer = threading.Thread(target=run, name="sbi-warm")
        self._warmer.start()

    def stop(self) -> None:
        """Stop streams and the warm-up (waits for the master print being made)."""
        self.stopping.set()
        if self._warmer is not None:
            self._warmer.join()

    # ------------------------------------------------------------------------ capture
    def rcapture(self, body: Any) -> tuple[dict[str, Any], str | None]:
        """RCAPTURE: (the answer, a malformation to apply to it or None); raises _Drop when
        the device is (being) unplugged."""
        with self.lock:
            if self.state.unplugged:
                raise _Drop("unplugged")
        spec = SPEC_VERSION
        try:
            if not isinstance(body, dict) or not isinstance(body.get("bio"), list):
                return _capture_error(spec, "710"), None
            spec = str(body.get("specVersion") or SPEC_VERSION)
            bio = body["bio"]
            if len(bio) != 1 or not isinstance(bio[0], dict):
                return _capture_error(spec, "109"), None
            b = bio[0]
            if body.get("env") not in ENVIRONMENTS:
                return _capture_error(spec, "115"), None
            if body.get("purpose") != PURPOSE:
                return _capture_error(spec, "121"), None
            if not _TRANSACTION.fullmatch(str(body.get("transactionId", ""))):
                return _capture_error(spec, "112"), None
            device_id = str(b.get("deviceId", ""))
            if device_id not in self._capturing:
                return _capture_error(spec, "705"), None
            if b.get("type") != ("Finger" if device_id == FINGER_ID else "Face"):
                return _capture_error(spec, "114"), None
            timeout = max(0.001, float(body.get("timeout") or 10000) / 1000)
            previous = (
                bytes.fromhex(str(b.get("previousHash") or "")) or hashlib.sha256(b"").digest()
            )
        except (TypeError, ValueError):
            return _capture_error(spec, "710"), None
        lock = self._capturing[device_id]
        if self.state.busy or not lock.acquire(blocking=False):
            return _capture_error(spec, "111"), None
        try:
            with self.lock:
                delay, unplug = self.state.delay_ms / 1000, self.state.unplug_after_ms
                self.state.unplug_after_ms = None
            if unplug is not None:
                time.sleep(unplug / 1000)
                with self.lock:
                    self.state.unplugged = True
                raise _Drop("unplugged")
            if delay:
                time.sleep(delay)
                if delay > timeout:
                    return _capture_error(spec, "701"), None
            with self.lock:
                tamper, malformed = self.state.tamper, self.state.malformed
                self.state.tamper, self.state.malformed = False, None
            records = self._fingers(b) if device_id == FINGER_ID else self._face(timeout)
            if isinstance(records, str):
                return _capture_error(spec, records), None
            items = []
            for sub, record, quality in records:
                if malformed == "truncated_bio":
                    record = record[: len(record) // 2]
                data = {
                    "digitalId": sign_jws(self._digital_id(device_id), self.key, self.certificate),
                    "deviceCode": self._serial[device_id],
                    "deviceServiceVersion": SERVICE_VERSION,
                    "bioType": b["type"],
                    "bioSubType": sub,
                    "purpose": body["purpose"],
                    "env": body["env"],
                    "bioValue": _b64url(record),
                    "transactionId": body["transactionId"]
                    if malformed != "wrong_transaction"
                    else str(uuid.uuid4()),
                    "timestamp": _now(),
                    "requestedScore": str(b.get("requestedScore", "")),
                    "qualityScore": str(quality),
                }
                if sub is None:
                    del data["bioSubType"]  # a face has none
                token = sign_jws(json.dumps(data).encode(), self.key, self.certificate)
                if tamper:
                    head, _, rest = token.partition(".")
                    _, _, signature = rest.partition(".")
                    data["qualityScore"] = "100"
                    token = f"{head}.{_b64url(json.dumps(data).encode())}.{signature}"
                digest = hashlib.sha256(previous + hashlib.sha256(record).digest()).digest()
                previous = digest
                items.append(
                    {
                        "specVersion": spec,
                        "data": token,
                        "hash": "0" * 64 if malformed == "bad_hash" else digest.hex().upper(),
                        "error": _error("0"),
                    }
                )
            return {"biometrics": items}, malformed
        finally:
            lock.release()

    def _fingers(self, b: dict[str, Any]) -> list[tuple[str | None, bytes, int]] | str:
        """The slap's records (bioSubType, ISO record, quality), or an error code."""
        try:
            sub_id = int(b.get("deviceSubId", -1))
            names = [str(n) for n in b.get("bioSubType") or []]
            exceptions = [str(n) for n in b.get("exception") or []]
            count = int(b.get("count", 0))
        except (TypeError, ValueError):
            return "109"
        if sub_id not in SLAP_FINGERS:
            return "109"
        slots = SLAP_FINGERS[sub_id]
        known = [n for n in names + exceptions if n != "UNKNOWN"]
        if any(_POSITION_OF.get(n) not in slots for n in known):
            return "109"
        asked = {_POSITION_OF[n] for n in names if n != "UNKNOWN"} or set(slots)
        if "UNKNOWN" in names:
            asked = set(slots)
        gone = {_POSITION_OF[n] for n in exceptions}
        wanted = [p for p in slots if p in asked and p not in gone]
        if not wanted or count != len(wanted):
            return "109"
        with self.lock:
            s = self.state
            person, visit, missing = s.person, s.visit, set(s.missing)
            attempts = {p: 100 * visit + s.attempts.get(p, 0) for p in wanted}
            for p in wanted:
                s.attempts[p] = s.attempts.get(p, 0) + 1
        placed: list[np.ndarray | None] = []
        quality: dict[int, int] = {}
        for p in slots:
            if p not in wanted or p in missing:
                placed.append(None)
                continue
            master = _master(_finger_seed(person, p))
            placed.append(
                synthetic.fingerprint_impression(master, attempts[p], difficulty=self.difficulty)
            )
            case = synthetic.hard_case(master, attempts[p], self.difficulty)
            jitter = int(np.random.default_rng([master.seed, attempts[p], 7]).integers(-6, 7))
            quality[p] = max(1, min(100, _QUALITY.get(case, 60) + jitter))
        layout = np.random.default_rng([self.seed, person, visit, sub_id, *attempts.values()])
        slap = compose_slap(placed, int(layout.integers(2**31)), _HAND[sub_id])
        try:
            segments = segment_slap(slap, len(wanted))  # as the firmware does
        except FingerprintReaderError:
            return "101"
        return [
            (
                FINGER_NAMES[p],
                FingerImage(image, p, 500, quality.get(p, 254)).to_iso19794_4("JPEG2000"),
                quality.get(p, 0),
            )
            for p, image in zip(wanted, segments, strict=True)
        ]

    def _face(self, timeout: float) -> list[tuple[str | None, bytes, int]] | str:
        """The face record (no bioSubType), or an error code."""
        from devices.camera import auto_capture
        from devices.simulation.camera import SimulatedCamera

        with self.lock:
            s = self.state
            photo, n = s.photo, s.faces
            s.faces += 1
            seed = self.seed + 1000 * s.visit + n
        if not photo:
            return "101"  # nobody stands there
        camera = SimulatedCamera.enrolment(photo, seed=seed, prelude=False)
        result = auto_capture(camera, timeout_seconds=min(timeout, 15.0))
        if result.status != "captured" or result.image is None or result.quality is None:
            return "701" if result.status == "timeout" else "101"
        image = result.image
        h, w = image.shape[:2]
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[20])
        return [(None, face_record(buf.getvalue(), w, h), result.quality.score)]

    # ------------------------------------------------------------------------- stream
    def frames(self, body: Any) -> Iterator[bytes] | str:
        """STREAM: M-JPEG frames of the device asked for, or an error code."""
        if not isinstance(body, dict):
            return "605"
        device_id = str(body.get("deviceId", ""))
        if device_id not in (FINGER_ID, FACE_ID):
            return "605"
        try:
            seconds = float(body.get("timeout") or 300000) / 1000
        except (TypeError, ValueError):
            return "605"
        return self._frames(device_id, seconds)

    def _frames(self, device_id: str, seconds: float) -> Iterator[bytes]:
        end = time.monotonic() + seconds
        if device_id == FACE_ID:
            yield from self._face_frames(end)
            return
        rng = np.random.default_rng(self.seed)
        platen = np.clip(rng.normal(236, 2.5, (375, 400)), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", platen, [cv2.IMWRITE_JPEG_QUALITY, 80])
        while ok and time.monotonic() < end and not self.stopping.is_set():
            yield jpeg.tobytes()
            time.sleep(0.2)

    def _face_frames(self, end: float) -> Iterator[bytes]:
        from devices.simulation.camera import SimulatedCamera

        with self.lock:
            photo, seed = self.state.photo, self.seed + 1000 * self.state.visit
        camera = SimulatedCamera.enrolment(photo, seed=seed, prelude=False) if photo else None
        rng = np.random.default_rng(seed)
        fps = 15.0
        while time.monotonic() < end and not self.stopping.is_set():
            start = time.monotonic()
            frame = camera.read() if camera is not None else None
            if frame is None and camera is not None:  # the script is over: play it again
                camera = SimulatedCamera.enrolment(photo or "", seed=seed, prelude=False)
                frame = camera.read()
            if frame is not None:
                bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            else:
                bgr = np.clip(rng.normal(200, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if ok:
                yield jpeg.tobytes()
            time.sleep(max(0.0, 1 / fps - (time.monotonic() - start)))


def face_record(image: bytes, width: int, height: int) -> bytes:
    """A JPEG 2000 face image as an ISO/IEC 19794-5:2011 record of one full frontal
    representation (no landmarks), the layout MOSIP's bio-utils write."""
    now = dt.datetime.now(dt.UTC)
    head = (
        struct.pack(
            ">HBBBBBH",
            now.year,
            now.month,
            now.day,
            now.hour,
            now.minute,
            now.second,
            now.microsecond // 1000,
        )
        + b"\x00" * 5  # capture device technology, vendor, type: unspecified
        + b"\x00"  # no quality blocks
        + struct.pack(">HBBBB3sH3s3s", 0, 0, 0, 0, 0, b"\0\0\0", 0, b"\0\0\0", b"\0\0\0")
        + struct.pack(">BBHHBHBB", 1, 1, width, height, 0, 0, 0, 1)  # full frontal, JPEG 2000
        + struct.pack(">I", len(image))
    )
    representation = struct.pack(">I", 4 + len(head) + len(image)) + head + image
    general = struct.pack(">8sIHBH", b"FAC\x00030\x00", 17 + len(representation), 1, 0, 0)
    return general + representation


def _error(code: str) -> dict[str, str]:
    return {"errorCode": code, "errorInfo": MESSAGES.get(code, "Unknown error")}


def _capture_error(spec: str, code: str) -> dict[str, Any]:
    return {"biometrics": [{"specVersion": spec, "data": "", "hash": "", "error": _error(code)}]}


# ---------------------------------------------------------------------------- transport
class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, device: SimulatedSBIDevice, verbose: bool) -> None:
        self.device, self.verbose = device, verbose
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "RNP-SimulatedSBI/" + SERVICE_VERSION

    def log_message(self, format: str, *args: Any) -> None:
        """Method, path and status only, and only with ``--verbose``."""
        if self.server.verbose:
            sys.stderr.write(f"sbi-device: {self.address_string()} {format % args}\n")

    @property
    def device(self) -> SimulatedSBIDevice:
        return self.server.device

    def _body(self) -> Any:
        """The request's JSON body (None when empty; ValueError when not JSON)."""
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY:
            raise ValueError("request body too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw.strip() else None

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", _METHODS)
        self.send_header("Access-Control-Allow-Headers", "Content-Type, EXT, X-Requested-With")

    def _send(self, data: bytes, status: int = 200, kind: str = "application/json") -> None:
        self.close_connection = True
        self.send_response(status)
        self._cors()
        self.send_header("Cache-Control", "no-store")
        self.send_header("Location", f"http://127.0.0.1:{self.device.port}")
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(json.dumps(obj).encode(), status)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _unplugged(self) -> bool:
        with self.device.lock:
            gone = self.device.state.unplugged
        if gone:
            self._drop()
        return gone

    def _read(self) -> tuple[bool, Any]:
        try:
            return True, self._body()
        except (ValueError, UnicodeDecodeError):
            return False, None

    def do_OPTIONS(self) -> None:
        """CORS pre-flight."""
        self._send(b"", kind="text/plain")

    def do_MOSIPDISC(self) -> None:
        """Device discovery."""
        ok, body = self._read()
        if self._unplugged():
            return
        self._json(self.device.discover(body if ok else None))

    def do_MOSIPDINFO(self) -> None:
        """Device info."""
        self._read()
        if self._unplugged():
            return
        self._json(self.device.info())

    def do_RCAPTURE(self) -> None:
        """Registration capture."""
        ok, body = self._read()
        if self._unplugged():
            return
        try:
            answer, malformed = self.device.rcapture(body if ok else None)
        except _Drop:
            self._drop()
            return
        if malformed == "not_json":
            self._send(b"<html><body>503 Service Unavailable</body></html>", kind="text/html")
        elif malformed == "truncated_body":
            data = json.dumps(answer).encode()
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._drop()
        else:
            self._json(answer)

    def do_CAPTURE(self) -> None:
        """Authentication capture: not offered by a registration device (mock MDS 809)."""
        self._read()
        if self._unplugged():
            return
        self._json(_capture_error(SPEC_VERSION, "809"))

    def do_STREAM(self) -> None:
        """The M-JPEG preview, until its timeout, the client leaving or an unplug."""
        ok, body = self._read()
        if self._unplugged():
            return
        frames = self.device.frames(body if ok else None)
        if isinstance(frames, str):
            self._json({"error": _error(frames)})
            return
        self.close_connection = True
        self.send_response(200)
        self._cors()
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for jpeg in frames:
                if self._unplugged():
                    return
                self.wfile.write(
                    f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    + jpeg
                    + b"\r\n"
                )
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client left

    def do_POST(self) -> None:
        """``/simulate``: the test's hand; nothing else."""
        if self.path.split("?")[0] != "/simulate":
            self._json({"error": _error("500")}, 404)
            return
        ok, body = self._read()
        try:
            if not ok:
                raise ValueError("not JSON")
            self._json(self.device.control(body))
        except (TypeError, ValueError) as exc:
            self._json({"ok": False, "error": str(exc)}, 400)

    def do_GET(self) -> None:
        """Not part of the SBI."""
        self._json({"error": _error("500")}, 405)


@contextlib.contextmanager
def running(
    folder: str | Path,
    trust_dir: str | Path | None = None,
    port: int | None = None,
    log: str | Path | None = None,
    cache: str | Path | None = None,
) -> Iterator[int]:
    """Start a simulated SBI device in its own process on a free port of 4501-4600 (or
    ``port``), with a new device PKI in ``folder``; its CA goes into ``trust_dir/sbi-ca/`` when
    given (the daemon's trust folder). Yields the port once the device's signed info
    verifies; stops the process on exit. RuntimeError when it does not come up in 60 s."""
    from devices import sbi

    ca, key, cert = make_device_pki(folder)
    if trust_dir is not None:
        (Path(trust_dir) / "sbi-ca").mkdir(parents=True, exist_ok=True)
        (Path(trust_dir) / "sbi-ca" / "simulated-provider.pem").write_bytes(ca.read_bytes())
    port = port or _free_port()
    cmd = [sys.executable, "-m", "devices.simulation.sbi_device", "--port", str(port)]
    cmd += ["--key", str(key), "--cert", str(cert)]
    if cache is not None:
        cmd += ["--cache", str(cache)]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the SBI simulated device exited ({proc.returncode})")
                with contextlib.suppress(sbi.SBIError), sbi.SBIClient(port, trust=[ca]) as c:
                    c.info()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the SBI simulated device did not answer in 60 s")
                time.sleep(0.1)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    """A port of 4501-4600 nothing listens on (SBI services' range)."""
    for port in range(4501, 4601):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 4501-4600")


def place(
    port: int,
    person: int | None,
    visit: int = 0,
    missing: Sequence[int] = (),
    host: str = "127.0.0.1",
    timeout: float = 5.0,
) -> None:
    """The simulated citizen steps up to the device on ``port`` (the device daemon's
    ``simulate.citizen`` with an SBI reader): whose fingers it captures, which visit, which
    fingers are missing; their master prints are made in the background from now, as the
    person's fingers are there before they touch the platen. ``person`` None: nobody (the
    device keeps the last person; a kiosk never captures without a citizen). OSError when the
    device does not answer."""
    if person is None:
        return
    body = {
        "person": person,
        "visit": visit,
        "missing": list(missing),
        "warm": [p for p in range(1, 11) if p not in missing],
    }
    try:
        r = httpx.post(f"http://{host}:{port}/simulate", json=body, timeout=timeout)
    except httpx.HTTPError as exc:
        raise OSError(f"the SBI simulated device on port {port} does not answer: {exc}") from exc
    if r.status_code != 200:
        raise OSError(f"the SBI simulated device refused the citizen: {r.text[:200]}")


def serve(
    port: int,
    key_path: str | Path,
    cert_path: str | Path,
    *,
    seed: int = 0,
    photo: str | None = None,
    env: str = "Developer",
    verbose: bool = False,
    cache: str | Path | None = None,
) -> None:
    """Serve the simulated device on 127.0.0.1:``port`` until SIGTERM / SIGINT; ``cache``:
    a folder of master prints (see :func:`master_print`)."""
    global _cache
    _cache = Path(cache) if cache else None
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("the device key must be RSA or EC P-256")
    certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    device = SimulatedSBIDevice(port, key, certificate, seed, photo, env)
    server = _Server(port, device, verbose)

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        device.stop()
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devices.simulation.sbi_device``: see the module docstring."""
    parser = argparse.ArgumentParser(description="A simulated MOSIP SBI device (tests, demo).")
    parser.add_argument("--port", type=int, required=True, help="4501-4600")
    parser.add_argument("--key", required=True, help="the device key (PEM)")
    parser.add_argument("--cert", required=True, help="the device certificate (PEM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photo", default=None, help="the face of who stands there")
    parser.add_argument("--env", default="Developer", choices=ENVIRONMENTS)
    parser.add_argument("--verbose", action="store_true", help="log requests (no data)")
    parser.add_argument("--cache", default=None, help="a folder of master prints to share")
    args = parser.parse_args(argv)
    try:
        serve(
            args.port,
            args.key,
            args.cert,
            seed=args.seed,
            photo=args.photo,
            env=args.env,
            verbose=args.verbose,
            cache=args.cache,
        )
    except OSError as exc:
        print(f"sbi-device: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
