"""The device daemon (``devices serve``): one process owns the kiosk's hardware.

It answers commands on a ZeroMQ ROUTER socket and publishes events on a PUB socket, both Unix
sockets in a directory only the kiosk's user may enter (the protocol and the directory are
described in :mod:`devices.bus`). It runs in one of two modes, never a mix:

- **real** (the default): each device opened by its driver spec (:mod:`devices.drivers`):
  camera ``opencv:<index|file|url>`` or ``sbi:<port>``; document camera: the same camera
  unless ``document_camera`` names another ``opencv:`` source; fingerprint reader
  ``sbi:<port>`` (a MOSIP SBI 2.0 slap reader), ``libfprint[:<driver>]`` or ``none``; card
  reader: a PC/SC reader through pcscd (any reader, or the one named). It refuses to start
  when vsmartcard's virtual reader is present.
- **simulated** (``simulated=True``, ``devices serve --simulate``; tests and the demo only):
  simulated camera (a person rendered from a real photo, :mod:`devices.simulation.camera`) and
  fingerprint reader (or an SBI simulated device, ``fingerprint="sbi:<port>"``: the real
  protocol), and the daemon *is* the citizen's card: it issues an emulated eMRTD,
  signed by its own test CSCA (kept in memory, never written anywhere), and inserts it into
  vsmartcard's virtual reader, so the card is still read through pcscd like any card; the
  document camera shows that card's back, its MRZ printed in OCR-B
  (:func:`devices.document.render_card_back`). A ``simulate.*`` command family (citizen,
  card, face, unplug, csca) exists in this mode only. Nothing of :mod:`devices.simulation` is
  imported in real mode.

Devices are found at start and watched (hot-plug): a reader that goes away is ``lost``, one
that comes back is opened again; each change is published (``device.connected`` /
``device.lost``, with driver, model, serial and firmware).

Commands: ``status``, ``face.capture``, ``finger.capture``, ``finger.slap`` (the fingers of
one slap at once, segmented), ``card.read`` (with the MRZ, the
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
import contextlib
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
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import zmq

from devices import card as card_mod
from devices import drivers
from devices import firmware as firmware_mod
from devices.bus import (
    PROTOCOL,
    default_state_dir,
    encode,
    endpoints,
    pack_arrays,
    secure_socket_dir,
)
from devices.camera import (
    CHALLENGE_SECONDS,
    Camera,
    auto_capture,
    record,
)
from devices.document import render_card_back
from devices.exceptions import DeviceError
from devices.fingerprint import POSITIONS, SLAPS, DeviceInfo, FingerprintReader
from devices.firmware import (
    FIRMWARE_FOLDER,
    CameraConfig,
    CardReaderConfig,
    FingerprintConfig,
    FirmwareConfigError,
    FirmwareStore,
    load_signers,
)
from devices.history import HISTORY_FILE, DeviceHistory
from devices.icao import lds
from devices.icao import mrz as mrz_mod

if TYPE_CHECKING:
    from devices.calibration import CalibrationResult
    from devices.simulation import emrtd

log = logging.getLogger("devices.daemon")
_REPLIES = "inproc://devices-daemon-replies"
PROBE_SECONDS = 2.0  # how often the daemon looks for devices plugged in or gone
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

    Devices are driver specs (:mod:`devices.drivers`). ``simulated``: the camera and the card
    are simulated, the fingerprint reader too unless ``fingerprint`` names an SBI device
    (the SBI simulated device, its own process); ``camera`` is then ignored. Without it,
    ``camera`` is a real driver (``opencv:``, ``sbi:`` or a plug-in) and ``fingerprint`` one
    too, or ``none``. ``document_camera`` (``opencv:``) is the camera over the document tray;
    None: the face camera. ``state_dir`` holds the device history and firmware configurations
    (None: :func:`default_state_dir`, or a folder beside the sockets when simulated)."""

    socket_dir: Path
    simulated: bool = False
    camera: str = "opencv:0"
    fingerprint: str | None = None  # None: "simulated" when simulated, else "none"
    card_reader: str | None = None  # PC/SC reader name; None: the first one
    trust_dir: Path | None = None  # CSCA certificates / master lists; SBI device CAs (read only)
    socket_group: str | None = None  # a group shared with the kiosk's user, if it differs
    heartbeat_seconds: float = 1.0
    document_camera: str | None = None  # opencv:<index|file|url>; None: the face camera
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.simulated:
            self.camera = "simulated"
            self.document_camera = None
            self.fingerprint = self.fingerprint or drivers.SIMULATED
            if self.fingerprint != drivers.SIMULATED and not self.fingerprint.startswith("sbi:"):
                raise DaemonConfigError(
                    f"fingerprint {self.fingerprint!r}: a simulated kiosk takes the simulated "
                    "reader or an SBI (simulated) device, sbi:<port>"
                )
            self.state_dir = self.state_dir or self.socket_dir.parent / (
                self.socket_dir.name + "-state"
            )
        else:
            self.fingerprint = self.fingerprint or drivers.NONE
            self.state_dir = self.state_dir or default_state_dir()
        specs = [
            ("camera", "camera", self.camera),
            ("fingerprint", "fingerprint", self.fingerprint),
        ]
        if self.document_camera is not None:
            specs.append(("document_camera", "camera", self.document_camera))
        for name, kind, spec in specs:
            try:
                parsed = drivers.check(kind, spec)  # type: ignore[arg-type]
            except drivers.DriverError as exc:
                raise DaemonConfigError(f"{name}: {exc}") from exc
            if not self.simulated and parsed.driver == drivers.SIMULATED:
                raise DaemonConfigError(
                    f"{name} {spec!r}: a real kiosk needs a real driver, e.g. "
                    "opencv:<index|file|url> (simulation only with --simulate, for the camera "
                    "and the card at once)"
                )
            if name == "document_camera" and parsed.driver != "opencv":
                raise DaemonConfigError(
                    f"document_camera {spec!r}: the document camera is opencv:<index|file|url>"
                )
            if name == "camera" and parsed.driver == drivers.NONE:
                raise DaemonConfigError("camera: a kiosk needs a camera, e.g. opencv:0")


@dataclass
class _Slot:
    """One device the daemon drives: its spec, what its driver reported, its health."""

    kind: str
    spec: str
    info: DeviceInfo | None = None
    state: str = "lost"
    since: float | None = None  # time.monotonic() when it was last connected
    last_error: str | None = None


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
        self.serial = os.environ.get("KIOSK_DEVICE_SERIAL", "SIM-0001")
        assert config.fingerprint is not None and config.state_dir is not None
        self._slots = {
            "camera": _Slot("camera", config.camera),
            "fingerprint": _Slot("fingerprint", config.fingerprint),
            "card_reader": _Slot("card_reader", config.card_reader or "pcsc"),
        }
        if config.simulated:  # simulated devices are there from the start
            self._connected("camera", _simulated_info("camera", self.serial), publish=False)
            if config.fingerprint == drivers.SIMULATED:
                info = _simulated_info("fingerprint", self.serial)
                self._connected("fingerprint", info, publish=False)
        elif drivers.Spec.parse(config.camera).driver == "opencv":
            self._connected("camera", _opencv_info(config.camera), publish=False)
        self._finger_lock = threading.Lock()  # one user of the reader at a time: capture, probe
        signers = load_signers(config.trust_dir) if config.trust_dir else []
        self.firmware = FirmwareStore(config.state_dir / FIRMWARE_FOLDER, signers)
        self.history = DeviceHistory(config.state_dir / HISTORY_FILE)
        self._target: tuple[str, dict[str, object]] | None = None  # simulated: what is shown
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
        self._reader: FingerprintReader | None = None  # open driver (simulated: per citizen)
        self._vcard: emrtd.VirtualCard | None = None
        self._document: emrtd.Document | None = None
        self.pki: emrtd.DocumentPKI | None = None
        self.trust = (
            lds.TrustStore.from_folder(config.trust_dir) if config.trust_dir else lds.TrustStore()
        )
        if config.simulated:  # its test CSCA lives in memory only, beside the trust list
            from devices.simulation import emrtd

            self.pki = emrtd.DocumentPKI.create("MA")
            self.trust = lds.TrustStore([*self.trust.certificates, self.pki.csca])
        self._handlers: dict[str, Callable[[dict[str, object]], tuple[dict, list[bytes]]]] = {
            "status": self._status,
            "face.capture": self._face_capture,
            "finger.capture": self._finger_capture,
            "finger.slap": self._finger_slap,
            "card.read": self._card_read,
            "document.capture": self._document_capture,
            "face.test": self._face_test,
            "calibrate": self._calibrate,
            "history": self._history,
            "firmware.list": self._firmware_list,
            "firmware.active": self._firmware_active,
            "firmware.diff": self._firmware_diff,
            "firmware.set": self._firmware_set,
            "firmware.rollback": self._firmware_rollback,
        }
        if config.simulated:
            self._handlers.update(
                {
                    "simulate.citizen": self._sim_citizen,
                    "simulate.card": self._sim_card,
                    "simulate.face": self._sim_face,
                    "simulate.unplug": self._sim_unplug,
                    "simulate.csca": self._sim_csca,
                    "simulate.target": self._sim_target,
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
            if self._reader is not None:
                self._reader.close()
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
    @property
    def camera_config(self) -> CameraConfig:
        """The face camera's firmware configuration in force."""
        cfg = self._firmware("camera")
        assert isinstance(cfg, CameraConfig)
        return cfg

    @property
    def finger_config(self) -> FingerprintConfig:
        """The fingerprint reader's firmware configuration in force."""
        cfg = self._firmware("fingerprint")
        assert isinstance(cfg, FingerprintConfig)
        return cfg

    def _config_model(self, kind: str) -> str:
        """The model whose firmware configuration a device follows: its own when this kiosk
        has one for it, else its driver's generic one."""
        slot = self._slots[kind]
        if kind == "card_reader":
            return CARD_READER_CONFIG
        driver = drivers.Spec.parse(slot.spec).driver
        if slot.info is not None and driver != drivers.SIMULATED:
            try:
                self.firmware.active_version(slot.info.model)
                return slot.info.model
            except FirmwareConfigError:
                pass
        generic = GENERIC_CONFIG.get((kind, driver))
        if generic is None:
            raise FirmwareConfigError(f"no firmware configuration for the {kind} {slot.spec!r}")
        return generic

    def _firmware(self, kind: str) -> CameraConfig | FingerprintConfig | CardReaderConfig:
        """The configuration in force (the firmware store's active version) of a device."""
        return self.firmware.active(self._config_model(kind))

    def _connected(self, kind: str, info: DeviceInfo | None, publish: bool = True) -> None:
        slot = self._slots[kind]
        was = slot.state
        slot.info, slot.state, slot.since = info or slot.info, "ok", time.monotonic()
        if publish and was != "ok":
            self.publish("device.connected", {"kind": kind, **_described(slot)})
            self._record(kind, "connected", f"{kind} connected ({slot.spec})", _described(slot))

    def _lost(self, kind: str, error: str | None) -> None:
        slot = self._slots[kind]
        was = slot.state
        slot.state, slot.since = "lost", None
        slot.last_error = error or slot.last_error
        if was != "lost":
            self.publish("device.lost", {"kind": kind, "error": error, **_described(slot)})
            self._record(kind, "lost", f"{kind} lost: {error or 'gone'}", _described(slot))

    def _failed(self, kind: str, error: DeviceError) -> None:
        """A command's device error: lost devices are marked lost, other errors remembered."""
        if error.code in ("device_lost", "no_reader"):
            self._lost(kind, str(error))
        elif error.code not in ("no_finger", "no_face", "busy", "bad_request"):
            self._slots[kind].last_error = f"{error.code}: {error}"
            self._record(kind, "error", f"{error.code}: {error}", {"code": error.code})

    def device_id(self, kind: str) -> str:
        """The device's id as the history and the enrolment packet name it."""
        info = self._slots[kind].info
        if info is None:
            return f"{kind}:{self._slots[kind].spec}"
        return f"{info.model}:{info.serial}" if info.serial else info.model

    def _record(self, kind: str, event: str, what: str, detail: dict[str, object]) -> None:
        """Keep a device event in the history; a history that cannot be written is logged,
        never the reason a capture fails."""
        try:
            self.history.event(self.device_id(kind), event, what[:200], detail)
        except DeviceError:
            log.exception("device history: cannot record a %s event", event)

    def _devices(self) -> list[dict[str, object]]:
        out = []
        for kind, slot in self._slots.items():
            state = "lost" if kind in self._unplugged else slot.state
            info = slot.info
            model = info.model if info else kind
            entry: dict[str, object] = {
                "kind": kind,
                "model": model,
                "device_id": self.device_id(kind),
                "firmware": info.firmware if info else "",
                "state": state,
                **_described(slot),
                "last_error": slot.last_error,
                "uptime_seconds": round(time.monotonic() - slot.since, 1)
                if slot.since is not None and state == "ok"
                else None,
            }
            if slot.spec != drivers.NONE:
                try:
                    model = self._config_model(kind)
                    cfg = self.firmware.active(model)
                    version = self.firmware.active_version(model)
                    entry["config"] = f"{cfg.model} {cfg.firmware} v{version}"
                except FirmwareConfigError as exc:
                    entry["config"], entry["last_error"] = None, str(exc)
            out.append(entry)
        return out

    def _status(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        present = self._card_state[1] if self._card_state else False
        return {"devices": self._devices(), "card_present": present}, []

    def _monitor(self) -> None:
        last_beat = last_probe = 0.0
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
            if present:
                info = DeviceInfo("card_reader", "pcsc", "", str(reader), "", "pcsc-lite")
                self._connected("card_reader", info, publish=old is not None)
            elif old is not None:
                self._lost("card_reader", "the card reader is disconnected")
            if (old is None and inserted) or (old is not None and old[1] != inserted):
                self.publish("card.inserted" if inserted else "card.removed", {})
            now = time.monotonic()
            if now - last_probe >= PROBE_SECONDS:
                last_probe = now
                self._probe_camera()
                self._probe_fingerprint()
            if now - last_beat >= self.config.heartbeat_seconds:
                last_beat = now
                self.publish(
                    "daemon.heartbeat", {"devices": self._devices(), "card_present": inserted}
                )
            self._stop.wait(0.25)

    def _probe_camera(self) -> None:
        """A USB camera is there when its ``/dev/video<i>`` node is (hot-plug)."""
        spec = drivers.Spec.parse(self.config.camera)
        if spec.driver == "opencv" and spec.argument.isdigit():
            if Path(f"/dev/video{spec.argument}").exists():
                self._connected("camera", _opencv_info(self.config.camera))
            else:
                self._lost("camera", f"/dev/video{spec.argument} is gone")

    def _probe_fingerprint(self) -> None:
        """Open the fingerprint reader if it is not open (at start, and when plugged in
        again); ask an open one who it is (it went away: lost). Skipped while it captures."""
        spec = self.config.fingerprint
        if spec in (drivers.SIMULATED, drivers.NONE) or not self._finger_lock.acquire(False):
            return
        try:
            self._check_reader()
        finally:
            self._finger_lock.release()

    def _check_reader(self) -> None:
        """(With ``_finger_lock`` held.) Open the reader, or ask the open one who it is."""
        assert self.config.fingerprint is not None
        try:
            if self._reader is None:
                options = self._driver_options()
                reader = drivers.open_fingerprint_reader(self.config.fingerprint, options)
                try:
                    info = reader.info()
                except DeviceError:
                    reader.close()
                    raise
                self._reader = reader
                self._connected("fingerprint", info)
            else:
                self._reader.check()
                self._connected("fingerprint", self._reader.info())
        except DeviceError as exc:
            self._drop_reader()
            self._lost("fingerprint", str(exc))

    def _drop_reader(self) -> None:
        if self._reader is not None and self.config.fingerprint != drivers.SIMULATED:
            with contextlib.suppress(DeviceError):
                self._reader.close()
            self._reader = None

    def _driver_options(self) -> drivers.DriverOptions:
        return drivers.DriverOptions(trust_dir=self.config.trust_dir)

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
        options = drivers.DriverOptions(self.config.trust_dir, c.width, c.height, c.fps)
        try:
            cam = drivers.open_camera(cfg.camera, options)
        except DeviceError as exc:
            self._failed("camera", exc)
            raise CommandError(exc.code, str(exc)) from exc
        if drivers.Spec.parse(cfg.camera).driver != "opencv":
            self._connected("camera", getattr(cam, "info", lambda: None)())
        return cam

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

    def _face_test(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        """A technician's test capture: one frame and its face quality read-out (sharpness,
        exposure, uniformity, pose) against the camera's firmware configuration."""
        from biometrics import face

        frame = self._grab("camera")
        quality = face.assess(frame, self.camera_config.quality.thresholds())
        specs, blobs = pack_arrays([frame])
        return {
            "passed": quality.passed,
            "score": quality.score,
            "reasons": quality.reasons,
            "metrics": {k: round(float(v), 3) for k, v in quality.metrics.items()},
            "model": self.camera_config.model,
            "arrays": specs,
        }, blobs

    def _grab(self, device: str) -> np.ndarray:
        """One settled RGB frame of the face camera (a technician's test or calibration)."""
        self._check_plugged(device)
        if self._target is not None and self._target[0] == "camera":
            from devices.simulation import targets

            return targets.render(self._target[1])
        cam = self._open_camera()
        frame = None
        try:
            for _ in range(DOCUMENT_WARMUP_FRAMES):  # (a person steps in, exposure settles)
                got = cam.read()
                if got is None:
                    break
                frame = got
        except DeviceError as exc:
            self._failed("camera", exc)
            raise CommandError(exc.code, str(exc)) from exc
        finally:
            if not self.config.simulated:
                cam.close()
        if frame is None:
            raise CommandError("device_lost", "the camera gave no image")
        return frame.image

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
        options = drivers.DriverOptions(
            self.config.trust_dir, *DOCUMENT_RESOLUTION, self.camera_config.capture.fps
        )
        try:
            cam = drivers.open_camera(spec, options)
        except DeviceError as exc:
            raise CommandError(exc.code, str(exc)) from exc
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
    def _reader_for_capture(self) -> FingerprintReader:
        self._check_plugged("fingerprint")
        if self.config.fingerprint == drivers.NONE:
            raise CommandError("device_lost", "no fingerprint reader driver is configured")
        if self._target is not None and self._target[0] == "fingerprint":
            from devices.simulation import targets

            return targets.TargetOnPlaten(self._target[1])
        if self._reader is None and self.config.fingerprint == drivers.SIMULATED:
            raise CommandError("no_finger", "no finger on the reader")
        if self._reader is None:  # not found yet, or lost: try it now rather than at the probe
            self._check_reader()
        if self._reader is None:
            error = self._slots["fingerprint"].last_error or "not found"
            raise CommandError("device_lost", f"the fingerprint reader is not there: {error}")
        return self._reader

    def _finger_answer(
        self, reader: FingerprintReader, images: dict[int, np.ndarray]
    ) -> tuple[dict, list[bytes]]:
        info = self._slots["fingerprint"].info
        specs, blobs = pack_arrays(list(images.values()))
        return {
            "positions": list(images),
            "dpi": reader.dpi,
            "model": self.finger_config.model,  # its firmware configuration (quality threshold)
            "device_model": info.model if info else None,
            "arrays": specs,
        }, blobs

    def _capture_fingers(
        self, positions: list[int], capture: Callable[[FingerprintReader], dict[int, np.ndarray]]
    ) -> tuple[dict, list[bytes]]:
        """Run one capture on the reader (exclusively), with progress events per finger."""
        with self._finger_lock:
            reader = self._reader_for_capture()
            for p in positions:
                self.publish("finger.progress", {"position": p, "state": "scanning"})
            try:
                images = capture(reader)
            except DeviceError as exc:
                state = "no_finger" if exc.code == "no_finger" else "failed"
                for p in positions:
                    self.publish("finger.progress", {"position": p, "state": state})
                self._failed("fingerprint", exc)
                if exc.code == "device_lost":
                    self._drop_reader()
                raise CommandError(exc.code, str(exc)) from exc
        for p in images:
            self.publish("finger.progress", {"position": p, "state": "captured"})
        return self._finger_answer(reader, images)

    def _finger_capture(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        try:
            # not typed precisely here: a JSON value from the kiosk: int() refuses a wrong one
            # (bad_request)
            position = int(args.get("position", 0))  # type: ignore[call-overload]
        except (TypeError, ValueError):
            position = 0
        if position not in POSITIONS:
            raise CommandError("bad_request", "finger position must be 1-10")
        result, blobs = self._capture_fingers(
            [position], lambda reader: {position: reader.capture(position)}
        )
        result["position"] = position
        return result, blobs

    def _finger_slap(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The fingers of one slap (``right``, ``left``, ``thumbs``) at once, segmented;
        ``missing``: positions of that slap the person cannot give (amputated, bandaged)."""
        slap = str(args.get("slap"))
        if slap not in SLAPS:
            raise CommandError("bad_request", f"slap must be one of {', '.join(SLAPS)}")
        missing = args.get("missing") or []
        if not isinstance(missing, list) or not all(m in SLAPS[slap] for m in missing):
            raise CommandError("bad_request", "missing: positions of that slap")
        wanted = [p for p in SLAPS[slap] if p not in missing]
        if not wanted:
            raise CommandError("bad_request", "every finger of the slap is missing")
        return self._capture_fingers(wanted, lambda reader: reader.capture_slap(wanted))

    # ------------------------------------------------------------------------ technicians
    def _calibrate(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """Run a calibration procedure on a device against its firmware configuration's
        targets, and keep the result in the history with the technician's id."""
        from devices import calibration

        device, procedure = str(args.get("device")), str(args.get("procedure"))
        technician = str(args.get("technician") or "").strip()
        if not technician:
            raise CommandError("bad_request", "a calibration is recorded with the technician's id")
        if procedure not in CALIBRATIONS.get(device, ()):
            raise CommandError("bad_request", f"no calibration {procedure!r} for a {device!r}")
        try:
            result = self._run_calibration(calibration, device, procedure)
            self.history.record_calibration(self.device_id(device), result, technician)
        except DeviceError as exc:
            if isinstance(exc, CommandError):
                raise
            raise CommandError(exc.code, str(exc)) from exc
        self.publish(
            "device.calibrated", {"kind": device, "procedure": procedure, "passed": result.passed}
        )
        return result.to_dict(), []

    def _run_calibration(
        self, calibration: ModuleType, device: str, procedure: str
    ) -> CalibrationResult:
        if device == "camera":
            camera = self.camera_config
            return getattr(calibration, procedure)(self._grab("camera"), camera)
        if device == "card_reader":
            cfg = self._firmware("card_reader")
            assert isinstance(cfg, CardReaderConfig)
            samples = calibration.measure_apdu_round_trip(
                self.config.card_reader, cfg.calibration.apdu_samples
            )
            return calibration.apdu_round_trip(samples, cfg)
        finger = self.finger_config
        with self._finger_lock:
            reader = self._reader_for_capture()
            try:
                image = (
                    reader.capture_blank()
                    if procedure == "platen"
                    else reader.capture(REFERENCE_POSITION)
                )
            except DeviceError as exc:
                self._failed("fingerprint", exc)
                raise
        if procedure == "platen":
            return calibration.platen(image, finger)
        if procedure == "resolution":
            return calibration.resolution(image, finger)
        previous = self.history.reference_scores(self.device_id("fingerprint"))
        return calibration.reference_finger(image, finger, previous)

    def _history(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The latest device events and calibrations (``device``: one device's id)."""
        device = str(args["device"]) if args.get("device") else None
        try:
            # not typed precisely here: a JSON number from the kiosk: int() refuses a wrong one
            limit = max(1, min(500, int(args.get("limit", 50))))  # type: ignore[call-overload]
        except (TypeError, ValueError) as exc:
            raise CommandError("bad_request", "limit must be a number") from exc
        events = [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "device_id": e.device_id,
                "kind": e.kind,
                "what": e.what,
            }
            for e in self.history.events(device, limit)
        ]
        calibrations = [
            {
                "at": c.at.isoformat(timespec="seconds"),
                "device_id": c.device_id,
                "procedure": c.procedure,
                "technician": c.technician,
                "passed": c.passed,
                "message": c.message,
                "measured": c.measured,
            }
            for c in self.history.calibrations(device, limit=limit)
        ]
        return {"events": events, "calibrations": calibrations}, []

    def _firmware_list(self, _: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The configuration in force of every device, with its last changes."""
        configs: list[dict[str, object]] = []
        for kind in self._slots:
            if self._slots[kind].spec == drivers.NONE:
                continue
            try:
                model = self._config_model(kind)
                history = self.firmware.history(model)
                version = self.firmware.active_version(model)
            except FirmwareConfigError as exc:
                configs.append({"kind": kind, "model": None, "error": str(exc)})
                continue
            configs.append(
                {
                    "kind": kind,
                    "model": model,
                    "version": version,
                    "history": [h.to_dict() for h in history[-10:]],
                }
            )
        return {"configs": configs}, []

    def _firmware_active(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """The configuration in force for a model (YAML): the kiosk checks captures against
        the same thresholds the daemon captured with."""
        model = str(args.get("model"))
        try:
            return {
                "text": self.firmware.show(model),
                "version": self.firmware.active_version(model),
            }, []
        except FirmwareConfigError as exc:
            raise CommandError(exc.code, str(exc)) from exc

    def _firmware_diff(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        try:
            return {"diff": self.firmware.diff(str(args.get("model")))}, []
        except FirmwareConfigError as exc:
            raise CommandError(exc.code, str(exc)) from exc

    def _firmware_set(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """A new configuration: signed by the registry, or made in technician mode (the
        kiosk's technician page, behind a technician's sign-in)."""
        signature = None
        if args.get("signature"):
            try:
                signature = base64.b64decode(str(args["signature"]), validate=True)
            except ValueError as exc:
                raise CommandError("firmware_bad_signature", "the signature is not base64") from exc
        try:
            version = self.firmware.set(
                str(args.get("text", "")),
                who=str(args.get("who", "")),
                why=str(args.get("why", "")),
                signature=signature,
                technician_mode=bool(args.get("technician_mode", False)),
            )
        except FirmwareConfigError as exc:
            raise CommandError(exc.code, str(exc)) from exc
        model = firmware_mod.parse(str(args.get("text", ""))).model
        self._firmware_changed(model, version, str(args.get("who")), str(args.get("why")))
        return {"version": version}, []

    def _firmware_changed(self, model: str, version: int, who: str, why: str) -> None:
        self.publish("firmware.changed", {"model": model, "version": version})
        try:
            detail = {"version": version, "who": who}
            self.history.event(model, "firmware", f"version {version}: {why}"[:200], detail)
        except DeviceError:
            log.exception("device history: cannot record a firmware change")

    def _firmware_rollback(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        try:
            # not typed precisely here: JSON values from the kiosk: int() refuses a wrong one
            to = int(args["to"]) if args.get("to") is not None else None  # type: ignore[call-overload]
            version = self.firmware.rollback(
                str(args.get("model")), str(args.get("who", "")), str(args.get("why", "")), to
            )
        except (TypeError, ValueError) as exc:
            raise CommandError("bad_request", "to: a version number") from exc
        except FirmwareConfigError as exc:
            raise CommandError(exc.code, str(exc)) from exc
        self._firmware_changed(
            str(args.get("model")), version, str(args.get("who")), str(args.get("why"))
        )
        return {"version": version}, []

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
        shown: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            # every 10 % of a file (DG2 is the one that takes time): the kiosk's progress bar
            step = done * 10 // max(total, 1)
            if shown.get(name) != step:
                shown[name] = step
                self.publish("card.progress", {"file": name, "done": done, "total": total})

        try:
            doc = card_mod.read_document(
                self.config.card_reader, key, self.trust, chunk=0xFF0, progress=progress
            )
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
            "access_control": doc.access_control,
            "chip_authentication": doc.chip_authentication,
            "active_authentication": doc.active_authentication,
            "active_authentication_reason": doc.active_authentication_reason,
        }
        files = {f"DG{n}": raw for n, raw in sorted(doc.data_groups.items())} | {"SOD": doc.sod}
        result["files"] = list(files)
        return result, list(files.values())

    # ------------------------------------------------------------------------ simulation
    def _sim_citizen(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """Put a simulated person at the kiosk (or nobody, with ``{}``)."""
        from devices.simulation.camera import SimulatedCamera
        from devices.simulation.fingerprint import SimulatedFingerprintReader

        self._remove_card()
        self._target = None  # the technician took their targets away
        simulated_reader = self.config.fingerprint == drivers.SIMULATED
        if simulated_reader and self._reader is not None:
            self._reader.close()
            self._reader = None
        if not args:
            self.citizen, self._camera = None, None
            self._sbi_citizen(None)
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
        if simulated_reader:
            self._reader = SimulatedFingerprintReader(
                c.finger_person,
                c.difficulty,
                c.missing,
                first_impression=8 * c.visit,
                prefetch=True,
            )
        self._sbi_citizen(c)
        self.citizen = c
        card = args.get("card")
        if isinstance(card, dict):
            look = _document_image(card.get("document_image"))
            self._document = self._issue(card, c)
            c.document_mrz, c.document_image = str(card["mrz"]), look
            self._insert_card()
        return {"card": self._document is not None}, []

    def _sbi_citizen(self, citizen: Citizen | None) -> None:
        """With an SBI simulated device as the reader: the same person stands at it."""
        spec = drivers.Spec.parse(self.config.fingerprint or drivers.NONE)
        if spec.driver != "sbi":
            return
        from devices.simulation import sbi_device

        try:
            if citizen is None:
                sbi_device.place(int(spec.argument), None)
            else:
                sbi_device.place(
                    int(spec.argument),
                    citizen.finger_person,
                    visit=citizen.visit,
                    missing=sorted(citizen.missing),
                )
        except OSError as exc:
            raise CommandError(
                "device_lost", f"the SBI simulated device is not there: {exc}"
            ) from exc

    def _issue(self, card: dict[str, object], citizen: Citizen) -> emrtd.Document:
        from devices.simulation import emrtd

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
        # a CNIE 2020 unless told otherwise: PACE (its CAN, or the MRZ) with Chip and Active
        # Authentication; {"chip": "bac"} gives an older BAC-only document
        profile: dict[str, Any] = {} if card.get("chip") == "bac" else dict(emrtd.CNIE)
        can = card.get("can")
        return emrtd.issue_document(
            text,
            buf.tobytes(),
            (w, h),
            self.pki,
            str(full_name) if full_name else None,
            can=str(can) if can else None,
            **profile,
        )

    def _insert_card(self) -> None:
        if self._document is None or self._vcard is not None:
            return
        from devices.simulation import emrtd

        vcard = emrtd.VirtualCard(emrtd.EmulatedChip(self._document))
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
        from devices.simulation.camera import SimulatedCamera

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

    def _sim_target(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        """What a technician puts in front of a simulated device for a calibration:
        ``{"device": "camera", "target": "grey_card", "params": {"dim": 0.5}}`` (see
        :mod:`devices.simulation.targets`; faults through the params), or ``{}``: nothing."""
        from devices.simulation import targets

        if not args:
            self._target = None
            return {}, []
        device, params = str(args.get("device")), args.get("params") or {}
        spec = {"target": str(args.get("target")), **(params if isinstance(params, dict) else {})}
        try:
            targets.check(device, spec)
        except ValueError as exc:
            raise CommandError("bad_request", str(exc)) from exc
        self._target = (device, spec)
        return {}, []

    def _sim_unplug(self, args: dict[str, object]) -> tuple[dict, list[bytes]]:
        kind = str(args.get("device"))
        if kind not in ("camera", "fingerprint"):
            raise CommandError("bad_request", "device must be camera or fingerprint")
        if args.get("plugged", False):
            self._unplugged.discard(kind)
            self._connected(kind, None)
        else:
            self._unplugged.add(kind)
            self._lost(kind, "unplugged")
        return {}, []


def _seed(args: dict[str, object], photo: str) -> int:
    """The simulated person's randomness: ``seed`` when given, else fixed by the photo, so a
    demo or test run repeats exactly."""
    # not typed precisely here: a JSON value of a simulate.* command: int() refuses a wrong one
    return int(args.get("seed", zlib.crc32(Path(photo).name.encode())))  # type: ignore[call-overload]


# The firmware configuration of a device whose model has none here: its driver's generic one
GENERIC_CONFIG = {
    ("camera", "simulated"): "simulated-camera",
    ("camera", "opencv"): "uvc-webcam",
    ("camera", "sbi"): "sbi-face-camera",
    ("fingerprint", "simulated"): "simulated-fingerprint",
    ("fingerprint", "sbi"): "sbi-slap-reader",
    ("fingerprint", "libfprint"): "libfprint-reader",
}
CARD_READER_CONFIG = "pcsc-reader"
CALIBRATIONS = {
    "camera": ("exposure_white_balance", "focus", "uniformity", "geometry"),
    "fingerprint": ("platen", "resolution", "reference_finger"),
    "card_reader": ("apdu_round_trip",),
}
REFERENCE_POSITION = 2  # the reference finger and the targets go where a right index goes


def _simulated_info(kind: str, serial: str) -> DeviceInfo:
    model = "simulated-camera" if kind == "camera" else "simulated-fingerprint"
    return DeviceInfo(kind, drivers.SIMULATED, "RNP", model, serial, "1.0")


def _opencv_info(spec: str) -> DeviceInfo:
    """A V4L2 camera as the kernel names it (discovery), or a file or stream by its spec."""
    for info in drivers.video_devices():
        if info.driver == spec:
            return info
    return DeviceInfo("camera", spec, "", "uvc-webcam", "", "")


def _described(slot: _Slot) -> dict[str, object]:
    info = slot.info
    return {
        "driver": slot.spec,
        "vendor": info.vendor if info else "",
        "serial": info.serial if info else "",
    }


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
