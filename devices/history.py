"""The devices' history: what happened to each device (connected, lost, errors, calibrations,
firmware changes) and every calibration result, in one SQLite file on the kiosk.

It stores no images and no personal data: device ids, technician ids, measured values and
targets, messages. Event details are small JSON objects of plain values (``detail`` is
refused if it holds anything else, or is larger than ``MAX_DETAIL_BYTES``: no image, no
template slips in).

One file (WAL journal, created on first use with mode 600 in a folder of mode 700), one
connection guarded by a lock: safe to share between threads; other processes may read it
at the same time (WAL).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from devices.calibration import CalibrationResult
from devices.exceptions import DeviceError

EventKind = Literal["connected", "lost", "error", "calibration", "firmware"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
MAX_DETAIL_BYTES = 4096  # an event's detail as JSON: enough for codes and numbers, not images
HISTORY_FILE = "history.sqlite3"  # in the daemon's state folder (bus.default_state_dir)
MAX_TEXT = 500  # device ids, technician ids, what happened, messages: characters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,               -- UTC, ISO 8601
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    what TEXT NOT NULL,
    detail TEXT                     -- JSON object, or NULL
);
CREATE INDEX IF NOT EXISTS events_device ON events (device_id, id);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,               -- UTC, ISO 8601
    device_id TEXT NOT NULL,
    device_model TEXT NOT NULL,
    procedure TEXT NOT NULL,
    technician TEXT NOT NULL,
    passed INTEGER NOT NULL,
    measured TEXT NOT NULL,         -- JSON object name -> number
    targets TEXT NOT NULL,          -- JSON object name -> number
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calibrations_device ON calibrations (device_id, procedure, id);
"""


class HistoryError(DeviceError, ValueError):
    """What was asked to be recorded cannot be (not the kind of data the history holds)."""

    code = "history_invalid"


@dataclass(frozen=True)
class DeviceEvent:
    """One thing that happened to a device."""

    id: int
    at: datetime  # UTC
    device_id: str
    kind: str  # one of EVENT_KINDS
    what: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class CalibrationRecord:
    """A stored calibration result: who ran it, when, and what it found."""

    id: int
    at: datetime  # UTC
    device_id: str
    device_model: str
    procedure: str
    technician: str
    passed: bool
    measured: dict[str, float]
    targets: dict[str, float]
    message: str


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise HistoryError(f"{what} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise HistoryError(f"{what} is longer than {MAX_TEXT} characters")
    return value.strip()


def _plain(value: object, path: str) -> None:
    """Refuse anything but JSON's plain values (bytes, arrays, objects: could be an image)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _plain(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise HistoryError(f"{path}: keys must be strings")
            _plain(v, f"{path}.{k}")
        return
    raise HistoryError(f"{path}: {type(value).__name__} is not stored in the device history")


def _numbers(values: dict[str, float], what: str) -> str:
    out: dict[str, float] = {}
    for k, v in values.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int | float):
            raise HistoryError(f"{what}: {k!r} must be a name and a number")
        out[k] = float(v)
    return json.dumps(out, allow_nan=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class DeviceHistory:
    """The device history in one SQLite file at ``path`` (created on first use)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # created with mode 600 before SQLite opens it (SQLite gives its WAL and shared
            # memory files the database file's permissions)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connect()
            except sqlite3.Error as exc:
                raise DeviceError(f"device history {self.path}: {exc}", "history_error") from exc

    def close(self) -> None:
        """Close the database (it opens again on next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> DeviceHistory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ events
    def event(
        self, device_id: str, kind: str, what: str, detail: dict[str, Any] | None = None
    ) -> int:
        """Record that something happened to a device; returns the event's id.

        ``kind``: ``connected``, ``lost``, ``error``, ``calibration`` or ``firmware``;
        ``what``: a short sentence; ``detail``: plain JSON values (codes, numbers), no images
        or personal data (HistoryError otherwise)."""
        device_id = _text(device_id, "device_id")
        what = _text(what, "what")
        if kind not in EVENT_KINDS:
            raise HistoryError(f"event kind must be one of {', '.join(EVENT_KINDS)}, not {kind!r}")
        blob = None
        if detail is not None:
            if not isinstance(detail, dict):
                raise HistoryError("detail must be a dict")
            _plain(detail, "detail")
            try:
                blob = json.dumps(detail, ensure_ascii=False, allow_nan=False)
            except ValueError as exc:
                raise HistoryError(f"detail: {exc}") from exc
            if len(blob.encode("utf-8")) > MAX_DETAIL_BYTES:
                raise HistoryError(f"detail is larger than {MAX_DETAIL_BYTES} bytes")
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO events (at, device_id, kind, what, detail) VALUES (?, ?, ?, ?, ?)",
                (_now(), device_id, kind, what, blob),
            )
            return int(cur.lastrowid or 0)

    def events(self, device_id: str | None = None, limit: int = 200) -> list[DeviceEvent]:
        """The latest events (of one device, or all), newest first."""
        sql = "SELECT id, at, device_id, kind, what, detail FROM events"
        args: list[Any] = []
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args.append(device_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(0, int(limit)))
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [
            DeviceEvent(
                id=r[0],
                at=datetime.fromisoformat(r[1]),
                device_id=r[2],
                kind=r[3],
                what=r[4],
                detail=json.loads(r[5]) if r[5] is not None else None,
            )
            for r in rows
        ]

    # ------------------------------------------------------------ calibrations
    def record_calibration(self, device_id: str, result: CalibrationResult, technician: str) -> int:
        """Store a calibration result (and a ``calibration`` event); returns its id."""
        device_id = _text(device_id, "device_id")
        technician = _text(technician, "technician")
        procedure = _text(result.procedure, "procedure")
        model = _text(result.device_model, "device model")
        measured = _numbers(result.measured, "measured")
        targets = _numbers(result.targets, "targets")
        message = result.message[: 4 * MAX_TEXT]
        at = _now()
        verdict = "passed" if result.passed else "failed"
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO calibrations (at, device_id, device_model, procedure, "
                    "technician, passed, measured, targets, message) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        at,
                        device_id,
                        model,
                        procedure,
                        technician,
                        int(result.passed),
                        measured,
                        targets,
                        message,
                    ),
                )
                row = int(cur.lastrowid or 0)
                db.execute(
                    "INSERT INTO events (at, device_id, kind, what, detail) VALUES (?, ?, ?, ?, ?)",
                    (
                        at,
                        device_id,
                        "calibration",
                        f"{procedure} {verdict}",
                        json.dumps({"calibration_id": row, "technician": technician}),
                    ),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return row

    def calibrations(
        self, device_id: str | None = None, procedure: str | None = None, limit: int = 200
    ) -> list[CalibrationRecord]:
        """The latest calibration results (of one device and/or procedure), newest first."""
        sql = (
            "SELECT id, at, device_id, device_model, procedure, technician, passed, measured, "
            "targets, message FROM calibrations"
        )
        where, args = [], []
        if device_id is not None:
            where.append("device_id = ?")
            args.append(device_id)
        if procedure is not None:
            where.append("procedure = ?")
            args.append(procedure)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._db() as db:
            rows = db.execute(sql, [*args, max(0, int(limit))]).fetchall()
        return [
            CalibrationRecord(
                id=r[0],
                at=datetime.fromisoformat(r[1]),
                device_id=r[2],
                device_model=r[3],
                procedure=r[4],
                technician=r[5],
                passed=bool(r[6]),
                measured=json.loads(r[7]),
                targets=json.loads(r[8]),
                message=r[9],
            )
            for r in rows
        ]

    def reference_scores(
        self, device_id: str, limit: int = 20, passed_only: bool = True
    ) -> list[float]:
        """The reference finger's NFIQ 2 scores on a device over time, oldest first: the
        ``previous_scores`` of ``devices.calibration.reference_finger``. Only runs that
        passed by default: a failed run (dirt since cleaned) is not the device's usual."""
        records = self.calibrations(device_id, "reference_finger", limit=10 * limit)
        scores = [
            r.measured["nfiq2"]
            for r in records
            if "nfiq2" in r.measured and (r.passed or not passed_only)
        ][:limit]
        return scores[::-1]
