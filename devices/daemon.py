"""The device daemon (``devices serve``): one process owns the kiosk's hardware.

It answers commands on a ZeroMQ ROUTER socket and publishes events on a PUB socket, both Unix
sockets in a directory only the kiosk's user may enter (the protocol and the directory are
described in :mod:`devices.bus`). It runs in one of two modes, never a mix:

- **real** (the default): camera ``opencv:<index|file|url>``; document camera: the same
  camera unless ``document_camera`` names another ``opencv:`` source; fingerprint reader
  ``none`` until a vendor / SBI driver is configured; card reader: a PC/SC reader through
  pcscd (any reader, or the one named). It refuses to start when vsmartcard's virtual reader
  is present.
- **simulated** (``simulated=True``, ``devices serve --simulate``; tests and the demo only):
  simulated camera (a person rendered from a real photo, see :mod:`devices.camera`) and
  fingerprint reader, and the daemon *is* the citizen's card: it issues an emulated eMRTD,
  signed by its own test CSCA (kept in memory, never written anywhere), and inserts it into
  vsmartcard's virtual reader, so the card is still read through pcscd like any card; the
  document camera shows that card's back, its MRZ printed in OCR-B
  (:func:`devices.document.render_card_back`). A ``simulate.*`` command family (citizen,
  card, face, unplug, csca) exists in this mode only.

Commands: ``status``, ``face.capture``, ``finger.capture``, ``card.read`` (with the MRZ, the
document number and dates, or the CAN) and ``document.capture`` (one image of the document
under the document camera, BGR, for :func:`devices.document.read_mrz`: the kiosk reads the
MRZ from it, then opens the chip with it).

Each device's capture settings come from its firmware configuration (``firmware_configs/``).
The trust folder is only ever read. The kiosk does not take the daemon's word for a card: it
receives the raw data groups and EF.SOD and runs passive authentication against its own trust
list (:mod:`kiosk.session`).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import zmq

from devices import card as card_mod
from devices.bus import PROTOCOL, encode, endpoints, pack_arrays, secure_socket_dir
from devices.camera import (
    CHALLENGE_SECONDS,
    Camera,
    CameraError,
    OpenCVCamera,
    SimulatedCamera,
    auto_capture,
    record,
)
from devices.document import render_card_back
from devices.exceptions import DeviceError
from devices.fingerprint import FingerprintReaderError, SimulatedFingerprintReader
from devices.firmware import CameraConfig, FingerprintConfig, by_model
from devices.icao import emulator, lds
from devices.icao import mrz as mrz_mod

log = logging.getLogger("devices.daemon")
_REPLIES = "inproc://devices-daemon-replies"
PREVIEW_WIDTH, PREVIEW_INTERVAL = 320, 0.2  # the face preview the kiosk screen mirrors
DOCUMENT_RESOLUTION = (1920, 1080)  # asked of a real document camera: the MRZ needs pixels
DOCUMENT_WARMUP_FRAMES = 5  # frames read before the one kept (auto exposure settles)


class CommandError(DeviceError):
    """A command failed in a way the kiosk can explain; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


class DaemonConfigError(DeviceError, ValueError):
    """The daemon cannot start as configured; the message says what to change."""


@dataclass
class DaemonConfig:
    """Which devices the daemon drives, and where it listens.

    ``simulated`` is all or nothing: with it, camera and fingerprint reader are simulated
    (``camera`` is then ignored); without it, ``camera`` must be an ``opencv:`` source, and
    there is no fingerprint reader (no real driver yet: issue 18). ``document_camera`` (an
    ``opencv:`` source too) is the camera over the document tray; None: the face camera."""

    socket_dir: Path
    simulated: bool = False
    camera: str = "opencv:0"
    card_reader: str | None = None  # PC/SC reader name; None: the first one
    trust_dir: Path | None = None  # CSCA certificates / master lists (read only)
    socket_group: str | None = None  # a group shared with the kiosk's user, if it differs
    heartbeat_seconds: float = 1.0
    document_camera: str | None = None  # opencv:<index|file|url>; None: the face camera

    def __post_init__(self) -> None:
        if self.simulated:
            self.camera = "simulated"
            self.document_camera = None
            return
        for name, spec in (("camera", self.camera), ("document_camera", self.document_camera)):
            if spec is not None and not spec.startswith("opencv:"):
                raise DaemonConfigError(
                    f"{name} {spec!r}: a real kiosk needs opencv:<index|file|url> "
                    "(simulation only with --simulate, for every device at once)"
                )

    @property
    def camera_model(self) -> str:
        """Firmware-configuration model name of the camera."""
        return "simulated-camera" if self.simulated else "uvc-webcam"


@dataclass
class Citizen:
    """The simulated person standing at the kiosk."""

    photo: str
    finger_person: int
    visit: int = 0  # how many times this person came before: each visit, new impressions
    missing: set[int] = field(default_factory=set)
    difficulty: float = 1.0
    prelude: bool = False
    follows_prompts: bool = True  # False: keeps still at the liveness prompt (liveness fails)
    companion: str | None = None
    seed: int = 0
    document_mrz: str | None = None  # the MRZ printed on the card's back (personal data)
    document_image: dict[str, float] | str | None = None  # capture overrides, or "unreadable"


class DeviceDaemon:
    """Serve commands and events until :meth:`stop`."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.commands, self.events = endpoints(config.socket_dir)
        camera, finger = by_model(config.camera_model), by_model("simulated-fingerprint")
        if not isinstance(camera, CameraConfig) or not isinstance(finger, FingerprintConfig):
            raise DaemonConfigError("the shipped firmware configurations are of the wrong kind")
        self.camera_config, self.finger_config = camera, finger
        self.serial = os.environ.get("KIOSK_DEVICE_SERIAL", "SIM-0001")
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._unplugged: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="device")
        self._local = threading.local()
        self._card_state: tuple[bool, bool] | None = None  # (reader present, card present)
        self.citizen: Citizen | None = None
        self._camera: Camera | None = None
        self._fingers: SimulatedFingerprintReader | None = None
        self._vcard: emulator.VirtualCard | None = None
        self._document: emulator.Document | None = None
        self.pki: emulator.DocumentPKI | None = None
        self.trust = (
            lds.TrustStore.from_folder(config.trust_dir) if config.trust_dir else lds.TrustStore()
        )
        if config.simulated:  # its test CSCA lives in memory only, beside the trust list
            self.pki = emulator.DocumentPKI.create("MA")
            self.trust = lds.TrustStore([*self.trust.certificates, self.pki.csca])
        self._handlers: dict[str, Callable[[dict[str, object]], tuple[dict, list[bytes]]]] = {
            "status": self._status,
            "face.capture": self._face_capture,
            "finger.capture": self._finger_capture,
            "card.read": self._card_read,
            "document.capture": self._document_capture,
        }
        if config.simulated:
            self._handlers.update(
                {
                    "simulate.citizen": self._sim_citizen,
                    "simulate.card": self._sim_card,
                    "simulate.face": self._sim_face,
                    "simulate.unplug": self._sim_unplug,
                    "simulate.csca": self._sim_csca,
                }
            )
        self.ready = threading.Event()

    # ------------------------------------------------------------------------ main loop
    def serve(self) -> None:
        """Bind the sockets and serve until :meth:`stop` is called."""
        secure_socket_dir(self.config.socket_dir, self.config.socket_group)
        router = self._ctx.socket(zmq.ROUTER)
        pub = self._ctx.socket(zmq.PUB)
        replies = self._ctx.socket(zmq.PULL)
        for s in (router, pub, replies):
            s.setsockopt(zmq.LINGER, 0)
        router.bind(self.commands)
        pub.bind(self.events)
        replies.bind(_REPLIES)
        monitor = threading.Thread(target=self._monitor, name="device-monitor", daemon=True)
        monitor.start()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        self.ready.set()
        log.info(
            "device daemon (%s) listening in %s",
            "simulated" if self.config.simulated else "real devices",
            self.config.socket_dir,
        )
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(200))
                if router in ready:
                    self._dispatch(router.recv_multipart())
                while replies in ready:
                    try:
                        kind, *frames = replies.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    (router if kind == b"reply" else pub).send_multipart(frames)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            if self._fingers is not None:
                self._fingers.close()
            if self._vcard is not None:
                self._vcard.remove()
            for s in (router, pub, replies):
                s.close()
            for name in ("commands", "events"):
                (self.config.socket_dir / name).unlink(missing_ok=True)

    def stop(self) -> None:
        """Ask :meth:`serve` to return."""
        self._stop.set()

    def _push(self) -> zmq.Socket:
        sock = getattr(self._local, "push", None)
        if sock is None:
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 1000)
            sock.connect(_REPLIES)
            self._local.push = sock
        return sock

    def publish(self, topic: str, body: dict[str, object]) -> None:
        """Publish an event (from any thread)."""
        self._push().send_multipart([b"event", topic.encode(), encode(body)])

    def _reply(self, ident: list[bytes], header: dict[str, object], blobs: list[bytes]) -> None:
        self._push().send_multipart([b"reply", *ident, b"", encode(header), *blobs])

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            split = frames.index(b"")
        except ValueError:
            return  # not from a DEALER/REQ peer: nothing to answer
        ident, payload = frames[:split], frames[split + 1 :]
        try:
            header = json.loads(payload[0])
            rid, cmd = str(header["id"]), str(header["cmd"])
            args = header.get("args") or {}
            if not isinstance(args, dict) or header.get("v") != PROTOCOL:
                raise ValueError("bad header")
        except (IndexError, KeyError, TypeError, ValueError):
            self._reply(ident, _error("?", "bad_request", "malformed command"), [])
            return
        handler = self._handlers.get(cmd)
        if handler is None:
            self._reply(ident, _error(rid, "unknown_command", f"unknown command {cmd!r}"), [])
            return
        device = cmd.split(".")[0]
        if device == "document" and self.config.document_camera is None:
            device = "face"  # one camera for both: one capture at a time
        if device in ("face", "finger", "card", "document"):
            with self._lock:
                if device in self._busy:
                    self._reply(ident, _error(rid, "busy", f"the {device} device is busy"), [])
                    return
                self._busy.add(device)
        self._pool.submit(self._run, ident, rid, cmd, device, handler, args)

    def _run(self, ident, rid, cmd, device, handler, args) -> None:
        blobs: list[bytes] = []
        try:
            result, blobs = handler(args)
            header: dict[str, object] = {"id": rid, "ok": True, "result": result}
        except CommandError as exc:
            header = _error(rid, exc.code, str(exc))
        except Exception:  # a driver bug must not kill the daemon; the kiosk gets an answer
            log.exception("command %s failed", cmd)
            header = _error(rid, "device_error", f"{cmd} failed unexpectedly")
        finally:  # free before answering: the kiosk may send the next command at once
            with self._lock:
                self._busy.discard(device)
        self._reply(ident, header, blobs)

    # ------------------------------------------------------------------------ health
    def _devices(self) -> list[dict[str, object]]:
        reader_ok = self._card_state[0] if self._card_state else False
        cam, fp = self.camera_config, self.finger_config
        return [
            {
                "kind": "camera",
                "model": cam.model,
                "device_id": f"{cam.model}:{self.serial}",
                "firmware": cam.firmware,
                "state": "lost" if "camera" in self._unplugged else "ok",
            },
            {
                "kind": "fingerprint",
                "model": fp.model,
                "device_id": f"{fp.model}:{self.serial}",
                "firmware": fp.firmware,
                "state": "ok"
                if self.config.simulated and "fingerprint" not in self._unplugged
                else "lost",
            },
            {
                "kind": "card_reader",
                "model": "pcsc",
                "device_id": self.config.card_reader or "pcsc:first",
                "firmware": "pcsc-lite",
                "state": "ok" if reader_ok else "lost",
            },
        ]

    def _status(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        present = self._card_state[1] if self._card_state else False
        return {"devices": self._devices(), "card_present": present}, []

    def _monitor(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                names = card_mod.readers()
            except card_mod.CardError:
                names = []
            reader = self.config.card_reader or (names[0] if names else None)
            present = reader in names
            # not typed precisely here: reader is a str whenever present is true
            inserted = present and card_mod.card_present(reader)  # type: ignore[arg-type]
            state = (present, inserted)
            old = self._card_state
            self._card_state = state
            if old is not None and old[0] != present:
                self.publish(
                    "device.connected" if present else "device.lost", {"kind": "card_reader"}
                )
            if (old is None and inserted) or (old is not None and old[1] != inserted):
                self.publish("card.inserted" if inserted else "card.removed", {})
            now = time.monotonic()
            if now - last_beat >= self.config.heartbeat_seconds:
                last_beat = now
                self.publish(
                    "daemon.heartbeat", {"devices": self._devices(), "card_present": inserted}
                )
            self._stop.wait(0.25)

    def _check_plugged(self, kind: str) -> None:
        if kind in self._unplugged:
            raise CommandError("device_lost", f"the {kind} is disconnected")

    # ------------------------------------------------------------------------ camera
    def _open_camera(self) -> Camera:
        cfg = self.config
        if cfg.camera == "simulated":
            if self._camera is None:
                raise CommandError("no_face", "nobody is in front of the camera")
            return self._camera
        c = self.camera_config.capture
        return _opencv(cfg.camera, c.width, c.height, c.fps)

    def _face_capture(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        self._check_plugged("camera")
        challenge = str(args.get("challenge", "left"))
        if challenge not in ("left", "right"):
            raise CommandError("bad_request", "challenge must be left or right")
        cam = self._open_camera()
        cfg = self.camera_config
        self.publish("face.feedback", {"codes": ["step_into_frame"], "score": 0})

        def feedback(codes: list[str], quality: object) -> None:
            self.publish("face.feedback", {"codes": codes, "score": getattr(quality, "score", 0)})

        shown = [0.0]

        def preview(image: np.ndarray) -> None:
            """The kiosk screen's mirror: a small JPEG, a few times a second, on the event
            bus only (the UI draws it and keeps nothing)."""
            now = time.monotonic()
            if now - shown[0] < PREVIEW_INTERVAL:
                return
            shown[0] = now
            scale = PREVIEW_WIDTH / image.shape[1]
            small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 60])
            if ok:
                self.publish("face.preview", {"jpeg": base64.b64encode(buf.tobytes()).decode()})

        try:
            result = auto_capture(
                cam,
                cfg.quality.thresholds(),
                consecutive=cfg.capture.auto_capture_consecutive,
                timeout_seconds=cfg.capture.timeout_seconds,
                on_feedback=feedback,
                on_frame=preview,
            )
            if result.status != "captured" or result.image is None or result.quality is None:
                raise CommandError(
                    "face_timeout",
                    "no usable face image: " + ", ".join(result.last_feedback or [result.status]),
                )
            self.publish("face.feedback", {"codes": [f"blink_turn_{challenge}"], "score": 100})
            cam.prompt(f"blink_turn_{challenge}")
            frames = record(cam, CHALLENGE_SECONDS)
        finally:
            if self.config.camera != "simulated":
                cam.close()
        self.publish("face.feedback", {"codes": ["captured"], "score": result.quality.score})
        specs, blobs = pack_arrays([result.image, *(f.image for f in frames)])
        return {
            "quality_score": result.quality.score,
            "model": cfg.model,
            "arrays": specs,
            "timestamps": [f.timestamp for f in frames],  # camera clock: liveness is timed
        }, blobs

    # ------------------------------------------------------------------------ document camera
    def _document_capture(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        """One image (BGR) of the document on the tray, for the kiosk to read its MRZ."""
        if self.config.document_camera is None:
            self._check_plugged("camera")
        if self.config.simulated:
            citizen = self.citizen
            if citizen is None or citizen.document_mrz is None:
                raise CommandError("no_document", "no document is under the document camera")
            image = _simulated_document(citizen)
        else:
            image = self._grab_document()
        specs, blobs = pack_arrays([image])
        return {"model": self.camera_config.model, "arrays": specs}, blobs

    def _grab_document(self) -> np.ndarray:
        spec = self.config.document_camera or self.config.camera
        cam = _opencv(spec, *DOCUMENT_RESOLUTION, self.camera_config.capture.fps)
        try:
            frame = None
            for _ in range(DOCUMENT_WARMUP_FRAMES):
                got = cam.read()
                if got is None:
                    break
                frame = got
        finally:
            cam.close()
        if frame is None:
            raise CommandError("device_lost", "the document camera gave no image")
        return cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)

    # ------------------------------------------------------------------------ fingerprints
    def _finger_capture(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        self._check_plugged("fingerprint")
        try:
            # not typed precisely here: a JSON value from the kiosk: int() refuses a wrong one
            # (bad_request)
            position = int(args.get("position", 0))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            position = 0
        if not 1 <= position <= 10:
            raise CommandError("bad_request", "finger position must be 1-10")
        if not self.config.simulated:  # real drivers (MOSIP SBI, libfprint) are future work
            raise CommandError("device_lost", "no fingerprint reader driver is configured")
        if self._fingers is None:
            raise CommandError("no_finger", "no finger on the reader")
        self.publish("finger.progress", {"position": position, "state": "scanning"})
        try:
            image = self._fingers.capture(position)
        except FingerprintReaderError as exc:
            self.publish("finger.progress", {"position": position, "state": "no_finger"})
            raise CommandError("no_finger", str(exc)) from exc
        self.publish("finger.progress", {"position": position, "state": "captured"})
        specs, blobs = pack_arrays([image])
        fp = self.finger_config
        return {
            "position": position,
            "dpi": fp.capture.dpi,
            "model": fp.model,
            "arrays": specs,
        }, blobs

    # ------------------------------------------------------------------------ card
    def _card_read(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        try:
            if "mrz" in args:
                key: mrz_mod.MRZKey | mrz_mod.CANKey = mrz_mod.parse(str(args["mrz"])).access_key()
            elif "can" in args:
                key = mrz_mod.CANKey(str(args["can"]))
            else:
                key = mrz_mod.MRZKey(str(args["number"]), str(args["birth"]), str(args["expiry"]))
        except (KeyError, mrz_mod.MRZError) as exc:
            raise CommandError("bad_key", f"the document data is not valid: {exc}") from exc
        try:
            doc = card_mod.read_document(self.config.card_reader, key, self.trust, chunk=0xFF0)
        except card_mod.CardError as exc:
            raise CommandError(exc.code, str(exc)) from exc
        m = doc.mrz
        result: dict[str, object] = {
            "document_code": m.document_type,
            "issuing_state": m.issuing_state,
            "document_number": m.document_number,
            "surname": m.primary_identifier,
            "given_names": m.secondary_identifier,
            "nationality": m.nationality,
            "date_of_birth": m.birth_date.isoformat() if m.birth_date else None,
            "sex": m.sex,
            "date_of_expiry": m.expiry_date.isoformat() if m.expiry_date else None,
            "full_name": doc.full_name,
            "face_mime": doc.face_mime,
            "passive_authentication": doc.passive_authentication.status,
            "passive_authentication_reason": doc.passive_authentication.reason,
        }
        files = {f"DG{n}": raw for n, raw in sorted(doc.data_groups.items())} | {"SOD": doc.sod}
        result["files"] = list(files)
        return result, list(files.values())

    # ------------------------------------------------------------------------ simulation
    def _sim_citizen(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """Put a simulated person at the kiosk (or nobody, with ``{}``)."""
        self._remove_card()
        if self._fingers is not None:
            self._fingers.close()
        if not args:
            self.citizen, self._camera, self._fingers = None, None, None
            return {}, []
        c = Citizen(
            photo=str(args["photo"]),
            # not typed precisely here: JSON values of a simulate.* command (tests, demo):
            # int()/float() refuse wrong ones
            finger_person=int(args.get("finger_person", 1)),  # type: ignore[call-overload]
            visit=int(args.get("visit", 0)),  # type: ignore[call-overload]
            missing={int(p) for p in args.get("missing", [])},  # type: ignore[attr-defined]
            difficulty=float(args.get("difficulty", 1.0)),  # type: ignore[arg-type]
            prelude=bool(args.get("prelude", False)),
            follows_prompts=bool(args.get("follows_prompts", True)),
            companion=str(args["companion"]) if args.get("companion") else None,
        )
        seed = c.seed = _seed(args, c.photo)
        try:
            self._camera = SimulatedCamera.enrolment(
                c.photo,
                companion=c.companion,
                seed=seed,
                prelude=c.prelude,
                follows_prompts=c.follows_prompts,
            )
        except (OSError, ValueError) as exc:
            raise CommandError("bad_request", f"cannot simulate a person from {c.photo}") from exc
        self._fingers = SimulatedFingerprintReader(
            c.finger_person, c.difficulty, c.missing, first_impression=8 * c.visit, prefetch=True
        )
        self.citizen = c
        card = args.get("card")
        if isinstance(card, dict):
            look = _document_image(card.get("document_image"))
            self._document = self._issue(card, c)
            c.document_mrz, c.document_image = str(card["mrz"]), look
            self._insert_card()
        return {"card": self._document is not None}, []

    def _issue(self, card: dict[str, object], citizen: Citizen) -> emulator.Document:
        assert self.pki is not None
        text = str(card["mrz"])
        photo = str(card.get("photo") or citizen.photo)
        img = cv2.imread(photo)
        if img is None:
            raise CommandError("bad_request", f"cannot read photo {photo}")
        scale = 480 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        h, w = img.shape[:2]
        full_name = card.get("full_name")
        return emulator.issue_document(
            text, buf.tobytes(), (w, h), self.pki, str(full_name) if full_name else None
        )

    def _insert_card(self) -> None:
        if self._document is None or self._vcard is not None:
            return
        vcard = emulator.VirtualCard(emulator.EmulatedChip(self._document))
        try:
            vcard.insert()
        except OSError as exc:
            raise CommandError("no_reader", f"the virtual card reader is not there: {exc}") from exc
        self._vcard = vcard

    def _remove_card(self) -> None:
        if self._vcard is not None:
            self._vcard.remove()
            self._vcard = None

    def _sim_face(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The same citizen steps in again (shown by another photo): a new camera session."""
        if self.citizen is None:
            raise CommandError("bad_request", "no simulated citizen")
        self.citizen.photo = str(args["photo"])
        try:
            self._camera = SimulatedCamera.enrolment(
                self.citizen.photo,
                seed=_seed(args, self.citizen.photo),
                prelude=False,
                follows_prompts=self.citizen.follows_prompts,
            )
        except (OSError, ValueError) as exc:
            raise CommandError(
                "bad_request", f"cannot simulate a person from {args['photo']}"
            ) from exc
        return {}, []

    def _sim_card(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        action = args.get("action")
        if action == "remove":
            self._remove_card()
        elif action == "insert":
            self._insert_card()
        else:
            raise CommandError("bad_request", "action must be insert or remove")
        return {}, []

    def _sim_csca(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The simulated documents' CSCA certificate (PEM), for the harness to put in the
        kiosk's trust folder: the daemon itself never writes it anywhere."""
        assert self.pki is not None
        return {"pem": self.pki.csca_pem().decode()}, []

    def _sim_unplug(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        kind = str(args.get("device"))
        if kind not in ("camera", "fingerprint"):
            raise CommandError("bad_request", "device must be camera or fingerprint")
        if args.get("plugged", False):
            self._unplugged.discard(kind)
            self.publish("device.connected", {"kind": kind})
        else:
            self._unplugged.add(kind)
            self.publish("device.lost", {"kind": kind})
        return {}, []


def _seed(args: dict[str, object], photo: str) -> int:
    """The simulated person's randomness: ``seed`` when given, else fixed by the photo, so a
    demo or test run repeats exactly."""
    # not typed precisely here: a JSON value of a simulate.* command: int() refuses a wrong one
    return int(args.get("seed", zlib.crc32(Path(photo).name.encode())))  # type: ignore[call-overload]


def _opencv(spec: str, width: int, height: int, fps: float) -> OpenCVCamera:
    """An ``opencv:<index|file|url>`` camera; CommandError ``device_lost`` when it won't open."""
    source: int | str = spec.partition(":")[2]
    source = int(source) if str(source).isdigit() else source
    try:
        return OpenCVCamera(source, width, height, fps)
    except CameraError as exc:
        raise CommandError("device_lost", str(exc)) from exc


def _document_image(value: object) -> dict[str, float] | str | None:
    """A ``simulate.citizen`` card's ``document_image``: ``{"angle", "blur", "noise",
    "scale"}`` overrides, or ``"unreadable"`` (glare over the MRZ)."""
    if value is None:
        return None
    if value == "unreadable":
        return "unreadable"
    keys = {"angle", "blur", "noise", "scale"}
    if not isinstance(value, dict) or not set(value) <= keys:
        raise CommandError(
            "bad_request", 'document_image: "unreadable" or {angle, blur, noise, scale}'
        )
    try:
        return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise CommandError("bad_request", "document_image values must be numbers") from exc


def _simulated_document(citizen: Citizen) -> np.ndarray:
    """The simulated citizen's card back under the document camera: held a little crooked,
    a little soft (drawn from the citizen's seed), unless the card says otherwise."""
    assert citizen.document_mrz is not None
    rng = random.Random(citizen.seed)
    look = {
        "angle": rng.uniform(-3.0, 3.0),
        "blur": rng.uniform(0.0, 0.8),
        "noise": rng.uniform(0.0, 4.0),
        "scale": rng.uniform(0.8, 1.0),
    }
    extra = citizen.document_image
    if isinstance(extra, dict):
        look.update(extra)
    try:
        image = render_card_back(citizen.document_mrz, citizen.seed, **look)
    except ValueError as exc:
        raise CommandError("bad_request", f"cannot render the document: {exc}") from exc
    if extra == "unreadable":  # glare from the kiosk's light washes out the MRZ
        h, w = image.shape[:2]
        glare = np.zeros((h, w), np.float32)
        cv2.ellipse(
            glare, (w // 2, round(0.72 * h)), (round(0.55 * w), round(0.2 * h)), 0, 0, 360, 1.0, -1
        )
        soft = cv2.GaussianBlur(glare, (0, 0), 0.03 * w)[:, :, None]
        image = (image * (1 - soft) + 250 * soft).astype(np.uint8)
    return image


def _error(rid: str, code: str, message: str) -> dict[str, object]:
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


def run(config: DaemonConfig) -> None:
    """Run a daemon in this thread until SIGINT/SIGTERM."""
    import signal

    daemon = DeviceDaemon(config)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: daemon.stop())
    daemon.serve()
