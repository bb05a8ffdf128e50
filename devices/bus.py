"""The device bus: how the kiosk talks to the device daemon (``devices serve``) over ZeroMQ.

Two sockets. Commands go to the daemon's ROUTER socket as multipart messages
``[b"", header-json, *blobs]`` and come back the same way, matched by request id; a reply
header holds ``ok`` and either ``result`` or ``error`` (``code`` + ``message``). Binary data
(images) travels as extra frames, never inside JSON; numpy arrays are described in the header
under ``arrays`` (shape, dtype) in frame order. Events are published on the daemon's PUB
socket as ``[topic, json]``: ``daemon.heartbeat``, ``device.connected``/``device.lost``,
``card.inserted``/``card.removed``/``card.progress``, ``face.feedback``, ``finger.progress``.

:class:`DeviceClient` opens a fresh DEALER socket for every call, so no call can receive a
stale reply and no call waits longer than its timeout: a dead daemon is
:class:`DaemonUnavailable`, never a hang.

Who may call: both sockets are Unix sockets (``ipc://``) in a directory that only the kiosk's
user may enter (mode 0700; 0770 with a group shared by the daemon's and the kiosk's users), so
another local user can neither capture a face nor read a card nor listen to the events.
:func:`secure_socket_dir` creates or checks that directory; the daemon refuses to start on one
that others can enter.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import stat
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from devices.exceptions import DeviceError

PROTOCOL = 1


def default_socket_dir() -> Path:
    """Where the daemon's sockets live: ``$RNP_DEVICES_DIR``, else ``/run/rnp-kiosk`` for root,
    ``$XDG_RUNTIME_DIR/rnp-kiosk`` (or ``/tmp/rnp-kiosk-<uid>``) for other users."""
    if os.environ.get("RNP_DEVICES_DIR"):
        return Path(os.environ["RNP_DEVICES_DIR"])
    if os.geteuid() == 0:
        return Path("/run/rnp-kiosk")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "rnp-kiosk" if runtime else Path(f"/tmp/rnp-kiosk-{os.geteuid()}")  # noqa: S108


def default_state_dir() -> Path:
    """Where the daemon keeps its device history and firmware configurations:
    ``$RNP_DEVICES_STATE``, else ``/var/lib/rnp-kiosk/devices`` for root,
    ``~/.local/state/rnp-kiosk/devices`` for other users."""
    if os.environ.get("RNP_DEVICES_STATE"):
        return Path(os.environ["RNP_DEVICES_STATE"])
    if os.geteuid() == 0:
        return Path("/var/lib/rnp-kiosk/devices")
    return Path.home() / ".local/state/rnp-kiosk/devices"


def endpoints(socket_dir: Path) -> tuple[str, str]:
    """The command (ROUTER) and event (PUB) endpoints in ``socket_dir``."""
    return f"ipc://{socket_dir / 'commands'}", f"ipc://{socket_dir / 'events'}"


class SocketDirError(DeviceError):
    """The socket directory is not private to the kiosk's user(s)."""


def secure_socket_dir(path: Path, group: str | None = None) -> Path:
    """Create ``path`` (mode 0700, or 0770 owned by ``group``) or check that an existing one
    belongs to this user and admits nobody else; raise SocketDirError otherwise."""
    gid = grp.getgrnam(group).gr_gid if group else None
    mode = 0o770 if gid is not None else 0o700
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode, parents=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise SocketDirError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise SocketDirError(f"{path} belongs to another user (uid {st.st_uid})")
    if gid is not None and st.st_gid != gid:
        os.chown(path, -1, gid)
    os.chmod(path, mode)  # whatever it was: only the owner (and the group) may enter
    return path


class DaemonUnavailable(DeviceError):
    """The device daemon did not answer in time (not running, or stuck)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "daemon_unavailable")


@dataclass
class Reply:
    """A successful reply: the result fields and the binary frames that came with it."""

    result: dict[str, object]
    blobs: list[bytes] = field(default_factory=list)

    def arrays(self) -> list[np.ndarray]:
        """The blobs described under ``result["arrays"]`` as numpy arrays."""
        specs = self.result.get("arrays") or []
        out = []
        # not typed precisely here: specs is the daemon's JSON list of {shape, dtype}
        for spec, blob in zip(specs, self.blobs, strict=False):  # type: ignore[call-overload]
            out.append(np.frombuffer(blob, dtype=spec["dtype"]).reshape(spec["shape"]))
        return out


def pack_arrays(arrays: list[np.ndarray]) -> tuple[list[dict[str, object]], list[bytes]]:
    """Header descriptions and frames for ``arrays``."""
    specs: list[dict[str, object]] = [
        {"shape": list(a.shape), "dtype": str(a.dtype)} for a in arrays
    ]
    return specs, [np.ascontiguousarray(a).tobytes() for a in arrays]


def encode(header: dict[str, object]) -> bytes:
    """A header frame."""
    return json.dumps(header, separators=(",", ":")).encode()


class DeviceClient:
    """Calls the device daemon. Thread-safe: every call uses its own socket."""

    def __init__(self, socket_dir: Path | None = None, timeout: float = 5.0) -> None:
        self.socket_dir = socket_dir or default_socket_dir()
        self.commands, self.events_endpoint = endpoints(self.socket_dir)
        self.timeout = timeout
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()

    def call(
        self,
        command: str,
        args: Mapping[str, object] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send ``command`` and wait for its reply; raises DeviceError or DaemonUnavailable."""
        timeout = self.timeout if timeout is None else timeout
        rid = uuid.uuid4().hex
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.commands)
            header = {"v": PROTOCOL, "id": rid, "cmd": command, "args": args or {}}
            sock.send_multipart([b"", encode(header)])
            deadline_ms = int(timeout * 1000)
            while sock.poll(deadline_ms):
                frames = sock.recv_multipart()
                if len(frames) < 2:
                    continue
                try:
                    reply = json.loads(frames[1])
                except ValueError:
                    continue
                if reply.get("id") != rid:
                    continue  # cannot happen with a fresh socket, but never trust the wire
                if not reply.get("ok"):
                    err = reply.get("error") or {}
                    raise DeviceError(
                        str(err.get("message", "device error")), str(err.get("code", "error"))
                    )
                return Reply(dict(reply.get("result") or {}), frames[2:])
            raise DaemonUnavailable(
                f"the device service did not answer {command!r} within {timeout:g} s"
            )
        finally:
            sock.close()

    def subscribe(self, *topics: str) -> EventStream:
        """Events whose topic starts with one of ``topics`` (all when none are given)."""
        return EventStream(self._ctx, self.events_endpoint, topics or ("",))

    # --- the commands, typed ------------------------------------------------------------------
    def status(self, timeout: float = 2.0) -> dict[str, object]:
        """Devices, their models, ids, firmware versions and health; whether a card is in."""
        return self.call("status", timeout=timeout).result

    def capture_face(self, challenge: str = "left", timeout: float = 90.0) -> FaceFrames:
        """Auto-capture a face (live feedback goes out as ``face.feedback`` events), then record
        the liveness challenge. Raises DeviceError ``face_timeout`` when no good frame came."""
        r = self.call("face.capture", {"challenge": challenge}, timeout=timeout)
        arrays = r.arrays()
        # not typed precisely here: JSON values from the daemon: int()/float() refuse a wrong one
        quality = int(r.result["quality_score"])  # type: ignore[call-overload]
        stamps = [float(t) for t in r.result.get("timestamps") or []]  # type: ignore[attr-defined]
        return FaceFrames(arrays[0], arrays[1:], quality, challenge, str(r.result["model"]), stamps)

    def capture_finger(self, position: int, timeout: float = 30.0) -> FingerImage:
        """One fingerprint image (uint8) at the reader's resolution. DeviceError ``no_finger``
        when none is on the reader."""
        r = self.call("finger.capture", {"position": position}, timeout=timeout)
        # not typed precisely here: a JSON number from the daemon: int() refuses a wrong one
        dpi = int(r.result["dpi"])  # type: ignore[call-overload]
        return FingerImage(r.arrays()[0], dpi, str(r.result["model"]))

    def capture_slap(
        self, slap: str, missing: list[int] | None = None, timeout: float = 45.0
    ) -> dict[int, FingerImage]:
        """The fingers of one slap (``right``, ``left``, ``thumbs``: ``devices.fingerprint.
        SLAPS``) captured at once and segmented, by ISO position; ``missing``: positions of that
        slap the person cannot give. A single-finger reader takes them one after the other."""
        r = self.call("finger.slap", {"slap": slap, "missing": missing or []}, timeout=timeout)
        # not typed precisely here: JSON values from the daemon: int() refuses a wrong one
        dpi = int(r.result["dpi"])  # type: ignore[call-overload]
        positions = [int(p) for p in r.result["positions"]]  # type: ignore[attr-defined]
        model = str(r.result["model"])
        return {
            p: FingerImage(image, dpi, model)
            for p, image in zip(positions, r.arrays(), strict=True)
        }

    def capture_document(self, timeout: float = 15.0) -> np.ndarray:
        """One image (BGR, uint8) of the document under the document camera, to read its MRZ
        from (:func:`devices.document.read_mrz`). DeviceError codes: ``no_document`` (nothing
        on the tray: the simulated citizen has no card), ``device_lost`` (the camera is gone
        or gave no image), ``busy`` (the camera is capturing a face)."""
        return self.call("document.capture", timeout=timeout).arrays()[0]

    def read_document(self, key: dict[str, str], timeout: float = 30.0) -> CardRead:
        """Read the ID card's chip with ``key`` (``{"mrz": lines}``, ``{"number", "birth",
        "expiry"}`` or ``{"can"}``). DeviceError codes: ``no_card``, ``access_denied``,
        ``card_removed``, ``card_too_slow``, ``no_reader``, ``chip_error``, ``not_authentic``
        (Chip Authentication failed), ``pace_unsupported``, ``bad_key``, ``unsupported``.
        ``card.progress`` events tell how far the files are read."""
        r = self.call("card.read", key, timeout=timeout)
        # not typed precisely here: a JSON list of file names from the daemon
        names = [str(n) for n in r.result.get("files") or []]  # type: ignore[attr-defined]
        return CardRead(dict(r.result), dict(zip(names, r.blobs, strict=False)))


@dataclass(frozen=True)
class FaceFrames:
    """What the camera gave: the best auto-captured frame and the challenge recording."""

    image: np.ndarray
    challenge_frames: list[np.ndarray]
    quality_score: int
    challenge: str
    model: str  # the camera's firmware-configuration model (its quality thresholds)
    timestamps: list[float]  # of the challenge frames, camera clock (seconds)


@dataclass(frozen=True)
class FingerImage:
    """One fingerprint capture and the reader that took it."""

    image: np.ndarray
    dpi: int
    model: str  # the reader's firmware-configuration model (its quality threshold)


@dataclass(frozen=True)
class CardRead:
    """A chip read: the daemon's summary (MRZ fields, its passive-authentication result) and
    the raw files as read (``DG1``, ``DG2``, ``DG11``/``DG12`` when present, ``SOD``), which the
    kiosk verifies itself against its own trust list."""

    fields: dict[str, object]
    files: dict[str, bytes]


class EventStream:
    """A subscription to the daemon's events; iterate with :meth:`next` (or ``for``)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, topics: tuple[str, ...]) -> None:
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        for t in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self._sock.connect(endpoint)

    def next(self, timeout: float) -> tuple[str, dict[str, object]] | None:
        """The next event as ``(topic, body)``, or None after ``timeout`` seconds."""
        if not self._sock.poll(int(timeout * 1000)):
            return None
        frames = self._sock.recv_multipart()
        try:
            return frames[0].decode(), json.loads(frames[1])
        except (IndexError, ValueError, UnicodeDecodeError):
            return None

    def __iter__(self) -> Iterator[tuple[str, dict[str, object]]]:
        while True:
            ev = self.next(3600)
            if ev is not None:
                yield ev

    def close(self) -> None:
        """Stop listening."""
        self._sock.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
