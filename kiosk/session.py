"""The enrolment session: an explicit state machine from welcome to receipt.

::

    welcome → language → document → face → fingers → review → receipt
                            │  chip (MRZ key, BAC, passive authentication), or — with a
                            │  supervisor — a birth-certificate extract or two witnesses
                            └─ every step: cancel or idle timeout → welcome, data wiped

Each action checks the current step and either moves on or raises :class:`StepError` with a
stable ``code`` (the UI translates it) and stays where it is, so every failure a person can
cause has a next step. Overrides (finger exceptions, no document, face/document mismatch)
need an operator's or supervisor's PIN and are recorded in the packet. Submitting commits
the packet to the outbox before the receipt is shown; after that the session holds only the
receipt number.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

import httpx
import numpy as np
from pydantic import ValidationError

from biometrics import face
from biometrics import fingerprint as fp
from central_api.enrolment.schemas import (
    CaptureInfo,
    Demographics,
    DeviceInfo,
    Document,
    DocumentSource,
    DocumentType,
    FingerException,
    FingerprintRecord,
    KioskRole,
    OperatorList,
    Override,
    QueryAnswer,
    ReceiptQuery,
    WitnessQuery,
    idcs_well_formed,
    pin_hash,
)
from devices import document as document_camera
from devices import firmware
from devices.bus import CardRead, DaemonUnavailable, DeviceClient, DeviceError
from devices.firmware import CameraConfig, FingerprintConfig, by_model
from devices.icao import lds
from devices.icao.mrz import MRZ
from kiosk.client import (
    AnswerNotAuthentic,
    CentralClient,
    PacketRefused,
    build_packet,
    write_private,
)
from kiosk.exceptions import KioskError
from kiosk.face_capture import FaceCapture, FaceCaptureFailed, finish_face
from kiosk.outbox import Entry, Outbox

# Single-finger reader order: index fingers first (the most useful for matching if the
# person has to stop), thumbs last, as a 4-4-2 slap sequence would take them.
FINGER_ORDER = (2, 3, 4, 5, 7, 8, 9, 10, 1, 6)
MAX_RECAPTURES = 3  # after the first attempt
FACE_ATTEMPTS = 3  # failed face captures before a supervisor decides (no endless loop)
SHIFT_HOURS = 10.0  # an agent's shift ends by itself after this long
TECHNICIAN_IDLE_MINUTES = 15.0  # the technician page signs its technician out when left
SAME_FINGER_BITS = 14.0  # a new print matching an earlier one this well is the same finger
LANGUAGES = ("ar", "fr", "zgh", "en")
_T = TypeVar("_T")
_C = TypeVar("_C", CameraConfig, FingerprintConfig)


class Step(StrEnum):
    """Where the citizen is."""

    WELCOME = "welcome"
    LANGUAGE = "language"
    DOCUMENT = "document"
    FACE = "face"
    FINGERS = "fingers"
    REVIEW = "review"
    RECEIPT = "receipt"

    @property
    def number(self) -> int:
        """The step's place in the citizen's journey ("3 / 6"; welcome is 0)."""
        return list(Step).index(self)


STEPS = len(Step) - 1  # the steps a citizen counts (welcome is not one)


class Problem(StrEnum):
    """Every problem the kiosk shows a citizen or an agent. Each has ``error.<value>`` (what
    happened) and ``next.<value>`` (what to do) in every catalogue under kiosk/locales/; a test
    holds the four catalogues to this list. Device problems are ``<stage>_<device code>``."""

    # operators
    OPERATOR_LOCKED = "operator_locked"
    OPERATOR_DENIED = "operator_denied"
    OPERATOR_UNKNOWN = "operator_unknown"
    SUPERVISOR_NEEDED = "supervisor_needed"
    TECHNICIAN_NEEDED = "technician_needed"
    AGENT_NEEDED = "agent_needed"
    OVERRIDE_INVALID = "override_invalid"
    NOTHING_TO_OVERRIDE = "nothing_to_override"
    BAD_REASON = "bad_reason"
    # showing a duplicate citizen their IDCS (agent screen)
    REVEAL_NOT_DUPLICATE = "reveal_not_duplicate"
    REVEAL_MISMATCH = "reveal_mismatch"
    REVEAL_REFUSED = "reveal_refused"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    # the flow
    WRONG_STEP = "wrong_step"
    BAD_LANGUAGE = "bad_language"
    BIRTH_CERTIFICATE_MISSING = "birth_certificate_missing"
    WITNESSES_INVALID = "witnesses_invalid"
    WITNESSES_NOT_REGISTERED = "witnesses_not_registered"
    REGISTRY_RATE_LIMITED = "registry_rate_limited"
    REVIEW_INVALID = "review_invalid"
    RECEIPT_NUMBER_INVALID = "receipt_number_invalid"
    SHIFT_NEEDED = "shift_needed"
    # devices, whatever the stage
    DEVICES_UNAVAILABLE = "devices_unavailable"
    DEVICE_LOST = "device_lost"
    DEVICE_ERROR = "device_error"
    # the document
    CARD_NO_READER = "card_no_reader"
    CARD_NO_CARD = "card_no_card"
    CARD_REMOVED = "card_card_removed"
    CARD_ACCESS_DENIED = "card_access_denied"
    CARD_BAD_KEY = "card_bad_key"
    CARD_CHIP_ERROR = "card_chip_error"
    CARD_NOT_AUTHENTIC = "card_not_authentic"
    CARD_DEVICE_LOST = "card_device_lost"
    CARD_BAD_NUMBER = "card_bad_number"  # typed entry: which field is wrong
    CARD_BAD_BIRTH = "card_bad_birth"
    CARD_BAD_EXPIRY = "card_bad_expiry"
    CARD_BAD_CAN = "card_bad_can"  # typed card access number: not 6 digits
    CARD_TOO_SLOW = "card_card_too_slow"  # the chip stopped answering or is too slow
    CARD_PACE_UNSUPPORTED = "card_pace_unsupported"  # a PACE variant this kiosk lacks
    # the document camera (the MRZ read by OCR)
    DOCUMENT_UNREADABLE = "document_mrz_unreadable"
    DOCUMENT_NO_DOCUMENT = "document_no_document"
    DOCUMENT_DEVICE_LOST = "document_device_lost"
    DOCUMENT_BUSY = "document_busy"  # the shared camera is taking a face
    # the face
    FACE_DEVICE_LOST = "face_device_lost"
    FACE_NO_FACE = "face_no_face"
    FACE_TIMEOUT = "face_face_timeout"
    FACE_LIVENESS = "face_liveness"
    FACE_ENCODING = "face_encoding"
    FACE_CHIP_PHOTO_UNUSABLE = "face_chip_photo_unusable"
    FACE_DOCUMENT_MISMATCH = "face_document_mismatch"
    FACE_SUPERVISOR = "face_supervisor"  # N failed attempts: a supervisor decides
    # the fingers
    FINGER_DEVICE_LOST = "finger_device_lost"
    FINGER_NO_FINGER = "finger_no_finger"
    FINGER_POOR_QUALITY = "finger_poor_quality"
    FINGER_SAME_AS_BEFORE = "finger_same_as_before"
    FINGER_UNUSABLE = "finger_unusable"
    # the household (RSU) desk
    HOUSEHOLD_BAD_IDCS = "household_bad_idcs"  # the citizen's own IDCS, as typed
    HOUSEHOLD_NOT_VERIFIED = "household_not_verified"  # face and IDCS do not go together
    HOUSEHOLD_REFUSED = "household_refused"  # too many failed checks for this IDCS today
    HOUSEHOLD_BAD_MEMBER = "household_bad_member"  # a member's IDCS, as typed
    HOUSEHOLD_BAD_AGE = "household_bad_age"
    HOUSEHOLD_DECLARANT_MINOR = "household_declarant_minor"
    HOUSEHOLD_BAD_ROOMS = "household_bad_rooms"
    HOUSEHOLD_BAD_AMOUNT = "household_bad_amount"
    HOUSEHOLD_INCOMPLETE = "household_incomplete"  # a choice left empty
    HOUSEHOLD_TOO_MANY = "household_too_many"  # more members than a household may have
    HOUSEHOLD_MEMBER_NOT_REGISTERED = "household_member_not_registered"
    HOUSEHOLD_MEMBER_ELSEWHERE = "household_member_in_another_household"
    HOUSEHOLD_INVALID = "household_declaration_invalid"

    @classmethod
    def from_device(cls, stage: str, code: str) -> Problem:
        """The problem for a device error ``code`` at ``stage`` (card, face, finger);
        DEVICE_ERROR for a code the kiosk has no message for (a newer daemon's)."""
        try:
            return cls(f"{stage}_{code}")
        except ValueError:
            return cls.DEVICE_ERROR


_FACE_STAGE_PROBLEMS = {
    "capture": Problem.FACE_TIMEOUT,
    "liveness": Problem.FACE_LIVENESS,
    "encoding": Problem.FACE_ENCODING,
}


class StepError(KioskError):
    """An action failed; the session stays on its step. ``code`` is translated by the UI."""

    def __init__(self, code: Problem, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code, self.detail = code, detail


@contextmanager
def registry_errors(not_found: Problem | None = None) -> Iterator[None]:
    """The registry's refusals of a kiosk's question as StepErrors: 429
    ``registry_rate_limited``, 404 ``not_found`` (when given), anything else, or no answer,
    ``registry_unavailable``."""
    try:
        yield
    except PacketRefused as exc:
        if exc.status_code == 429:
            raise StepError(Problem.REGISTRY_RATE_LIMITED) from exc
        if exc.status_code == 404 and not_found is not None:
            raise StepError(not_found) from exc
        raise StepError(Problem.REGISTRY_UNAVAILABLE, exc.code) from exc
    except (AnswerNotAuthentic, httpx.HTTPError, OSError) as exc:
        raise StepError(Problem.REGISTRY_UNAVAILABLE, type(exc).__name__) from exc


# ---------------------------------------------------------------------------- operators
Role = KioskRole
# a technician's PIN opens the technician page only: no authority over an enrolment
_ROLE_RANK = {"technician": 0, "operator": 1, "supervisor": 2}


class Operators:
    """Operators and supervisors of this centre, with scrypt-hashed PINs (a JSON file).

    The registry is the source of truth: the kiosk's sync installs the list it signs for this
    kiosk (:meth:`install`, ``kiosk_id`` set), replacing the file; :meth:`add` (``kiosk
    operator-add``) only bootstraps a kiosk before its first sync or for a demo.

    Five wrong PINs in a row lock the operator for five minutes. Lockouts are kept in
    ``lockouts.json`` in the kiosk's data directory (``state_dir``; beside the operators file
    when not given), so restarting the kiosk does not clear them; a supervisor (or
    ``kiosk operator-unlock``) lifts one."""

    MAX_FAILURES = 5
    LOCK_SECONDS = 300.0

    def __init__(
        self,
        path: Path,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        kiosk_id: str = "",
    ) -> None:
        self.path, self.kiosk_id = path, kiosk_id
        self.lockouts = (state_dir or path.parent) / "lockouts.json"
        self.clock = clock
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        return {o["id"]: o for o in json.loads(self.path.read_text())["operators"]}

    @property
    def version(self) -> int:
        """The version of the registry's list installed here (0: a local file only)."""
        if not self.path.exists():
            return 0
        return int(json.loads(self.path.read_text()).get("version", 0))

    def sync(self, client: CentralClient, registry_public: bytes) -> bool:
        """Fetch this kiosk's list from the registry and :meth:`install` it."""
        return self.install(client.operators(), registry_public)

    def install(self, signed: OperatorList, registry_public: bytes) -> bool:
        """Replace the operators with the registry's list for this kiosk, if its signature
        verifies (DecisionNotAuthentic if not) and it is newer than the one installed (an
        older one is ignored: False). Lockouts are kept."""
        lst = signed.verify(registry_public, self.kiosk_id)
        with self._lock:
            if lst.version <= self.version and self.path.exists():
                return False
            body = {
                "version": lst.version,
                "issued_at": lst.issued_at,
                "operators": [o.model_dump() for o in lst.operators],
            }
            write_private(self.path, json.dumps(body, indent=1).encode())
        return True

    def _failures(self) -> dict[str, list[float]]:
        try:
            return {k: list(v) for k, v in json.loads(self.lockouts.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def add(self, operator_id: str, role: Role, pin: str) -> None:
        """Create or re-PIN an operator."""
        if not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise ValueError("a PIN is 4 to 12 digits")
        ops = self._load()
        salt = os.urandom(16)
        ops[operator_id] = {
            "id": operator_id,
            "role": role,
            "salt": salt.hex(),
            "hash": pin_hash(pin, salt),
        }
        write_private(self.path, json.dumps({"operators": list(ops.values())}, indent=1).encode())

    def locked(self, operator_id: str) -> bool:
        """True while ``operator_id`` is locked out."""
        count, until = self._failures().get(operator_id, [0, 0.0])
        return count >= self.MAX_FAILURES and self.clock() < until

    def authenticate(self, operator_id: str, pin: str, needs: Role) -> Role:
        """The operator's role if the PIN is right and the role suffices; StepError if not
        (``operator_locked``, ``operator_denied``, ``supervisor_needed``)."""
        with self._lock:
            failures = self._failures()
            count, until = failures.get(operator_id, [0, 0.0])
            if count >= self.MAX_FAILURES and self.clock() < until:
                raise StepError(Problem.OPERATOR_LOCKED)
            op = self._load().get(operator_id)
            ok = op is not None and hmac.compare_digest(
                op["hash"], pin_hash(pin, bytes.fromhex(op["salt"]))
            )
            if not ok:
                failures[operator_id] = [count + 1, self.clock() + self.LOCK_SECONDS]
                write_private(self.lockouts, json.dumps(failures).encode())
                if count + 1 >= self.MAX_FAILURES:
                    raise StepError(Problem.OPERATOR_LOCKED)
                raise StepError(Problem.OPERATOR_DENIED)
            if operator_id in failures:
                del failures[operator_id]
                write_private(self.lockouts, json.dumps(failures).encode())
        assert op is not None
        # not typed precisely here: operators.json is written by add() with a Role; a hand-edited
        # wrong one fails at the check below
        role: Role = op["role"]  # type: ignore[assignment]
        if needs == "technician" and role != "technician":
            raise StepError(Problem.TECHNICIAN_NEEDED)
        if _ROLE_RANK[role] < _ROLE_RANK[needs]:
            raise StepError(
                Problem.SUPERVISOR_NEEDED if role != "technician" else Problem.AGENT_NEEDED
            )
        return role

    def role_of(self, operator_id: str) -> Role | None:
        """``operator_id``'s role, or None if they are not (or no longer) an operator here."""
        op = self._load().get(operator_id)
        # not typed precisely here: operators.json holds one of the two roles (see authenticate)
        return op["role"] if op else None  # type: ignore[return-value]

    def listing(self) -> list[dict[str, object]]:
        """Every operator here (id, role, locked), without PIN hashes: the agent console's
        list. The registry's signed list is the source (``version`` > 0)."""
        return [
            {"id": o["id"], "role": o["role"], "locked": self.locked(o["id"])}
            for o in sorted(self._load().values(), key=lambda o: o["id"])
        ]

    def unlock(self, operator_id: str) -> None:
        """Lift ``operator_id``'s lockout (the command line, run by the kiosk's owner)."""
        with self._lock:
            failures = self._failures()
            if failures.pop(operator_id, None) is not None:
                write_private(self.lockouts, json.dumps(failures).encode())

    def unlock_by(self, supervisor_id: str, pin: str, operator_id: str) -> None:
        """A supervisor, with their PIN, lifts ``operator_id``'s lockout."""
        if operator_id not in self._load():
            raise StepError(Problem.OPERATOR_UNKNOWN)
        self.authenticate(supervisor_id, pin, "supervisor")
        self.unlock(operator_id)


@dataclass(frozen=True)
class Shift:
    """The agent on duty at this kiosk: signed in at the agent console with their PIN, so the
    overrides they make during the shift ask for no PIN on the citizen's screen."""

    operator_id: str
    role: Role
    started: float  # time.time()


# ---------------------------------------------------------------------------- session data
@dataclass
class Finger:
    """One captured finger: its template and quality (for the kiosk's own checks) and its
    image as the ISO/IEC 19794-4 WSQ record the registry makes its own template from."""

    position: int
    template: fp.FingerprintTemplate
    quality: int
    image: bytes


@dataclass
class KioskSettings:
    """What a kiosk is and how strict its session is."""

    kiosk_id: str
    centre: str = "Centre de services — démo"
    idle_timeout: float = 180.0
    max_recaptures: int = MAX_RECAPTURES
    face_attempts: int = FACE_ATTEMPTS
    face_document_fmr: float = 1e-3
    # CSCA certificates / ICAO master lists the kiosk itself trusts: it runs passive
    # authentication on the raw chip data, whatever the device daemon says
    trust_dir: Path | None = None


@dataclass(frozen=True)
class VerifiedChip:
    """What the kiosk takes from a chip, after checking it itself."""

    mrz: MRZ
    face_image: bytes
    passive_authentication: lds.PassiveAuthentication


def verify_chip(read: CardRead, trust: lds.TrustStore) -> VerifiedChip:
    """Passive authentication of the raw files the daemon read (DG1, DG2, EF.SOD) against
    ``trust``, then DG1 and DG2 parsed from those same bytes. Raises lds.LDSError."""
    if "SOD" not in read.files or "DG1" not in read.files or "DG2" not in read.files:
        raise lds.LDSError("the chip read lacks DG1, DG2 or EF.SOD")
    groups = {int(k[2:]): v for k, v in read.files.items() if k.startswith("DG")}
    pa = lds.passive_authentication(lds.parse_sod(read.files["SOD"]), groups, trust)
    return VerifiedChip(lds.parse_dg1(groups[1]), lds.parse_dg2(groups[2]).data, pa)


@dataclass
class _Data:
    language: str = "fr"
    source: DocumentSource | None = None
    passive_authentication: str | None = None  # the kiosk's own verdict on the chip
    # the daemon's word on how the chip was opened and whether it proved it is genuine
    # (Chip / Active Authentication run between the daemon and the chip: the kiosk cannot
    # redo them from the files)
    chip_checks: dict[str, str] = field(default_factory=dict)
    chip_face: bytes | None = None
    fields: dict[str, object] = field(default_factory=dict)  # demographics draft
    typed: dict[str, str] = field(default_factory=dict)  # the typed card form, kept on error
    birth_certificate: str | None = None
    witnesses: list[str] = field(default_factory=list)
    face_template: np.ndarray | None = None
    face_token: bytes | None = None
    face_quality: int = 0
    face_liveness: bool = False
    face_similarity: float | None = None
    face_mismatch: bool = False
    face_failures: int = 0
    face_candidate: FaceCapture | None = None  # the best failed capture (a supervisor may take it)
    fingers: dict[int, Finger] = field(default_factory=dict)
    exceptions: dict[int, str] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)
    devices: list[DeviceInfo] = field(default_factory=list)

    def wipe(self) -> None:
        """Overwrite what can be overwritten, then drop every reference."""
        if self.face_template is not None:
            self.face_template.fill(0)
        if self.face_candidate is not None:
            self.face_candidate.template.fill(0)
        # not typed precisely here: resetting the dataclass in place (every field back to its
        # default) keeps references to it valid
        self.__init__()  # type: ignore[misc]


class EnrolmentSession:
    """One citizen's enrolment at this kiosk (one at a time; thread-safe)."""

    def __init__(
        self,
        settings: KioskSettings,
        devices: DeviceClient,
        outbox: Outbox,
        operators: Operators,
        on_submitted: Callable[[Entry], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.devices, self.outbox, self.operators = (
            settings,
            devices,
            outbox,
            operators,
        )
        self.on_submitted = on_submitted
        # the registry's answers to the kiosk's questions (witnesses, receipts); None offline
        self.ask: Callable[[WitnessQuery | ReceiptQuery], QueryAnswer] | None = None
        self.clock = clock
        self.step = Step.WELCOME
        self.data = _Data()
        self.receipt: Entry | None = None
        self.last_error: Problem | None = None
        self.session_id = uuid.uuid4().hex
        self.shift: Shift | None = None
        self._technician: Shift | None = None
        self._touched = clock()
        self._lock = threading.RLock()
        self.trust = (
            lds.TrustStore.from_folder(settings.trust_dir)
            if settings.trust_dir
            else lds.TrustStore()
        )

    # ------------------------------------------------------------------------ plumbing
    def _config(self, model: str, kind: type[_C]) -> _C:
        """The firmware configuration in force for the device model the daemon reports (the
        daemon's firmware store: a technician may have changed it); the shipped one when the
        daemon cannot say."""
        try:
            answer = self.devices.call("firmware.active", {"model": model}, timeout=5.0)
            config: object = firmware.parse(str(answer.result["text"]), f"{model} in force")
        except (DeviceError, KeyError):
            config = by_model(model)
        if not isinstance(config, kind):
            raise self._fail(Problem.DEVICE_ERROR, f"{model} is not a {kind.__name__}")
        return config

    def _expect(self, *steps: Step) -> None:
        if self.step not in steps:
            # a double click or a stale page: not the person's error, nothing to show
            raise StepError(Problem.WRONG_STEP, f"not possible at step {self.step}")

    def _touch(self) -> None:
        self._touched = self.clock()

    @property
    def language(self) -> str:
        """The citizen's language (the UI's)."""
        return self.data.language

    def expire_if_idle(self) -> bool:
        """Cancel (and wipe) an abandoned session; True if it was."""
        with self._lock:
            idle = self.clock() - self._touched > self.settings.idle_timeout
            if idle and self.step not in (Step.WELCOME,):
                self.cancel()
                return True
            return False

    def touch(self) -> None:
        """The citizen is still there (typing, or "I am here" at the idle warning)."""
        with self._lock:
            self._touch()

    @property
    def idle_seconds(self) -> float:
        """Seconds since the citizen last did anything."""
        return self.clock() - self._touched

    def cancel(self) -> None:
        """Abandon the enrolment at any step: wipe its data, back to a neutral welcome (no
        language, no error: the next person starts afresh)."""
        with self._lock:
            self.data.wipe()
            self.receipt = None
            self.step = Step.WELCOME
            self.last_error = None
            self.session_id = uuid.uuid4().hex
            self._touch()

    def _fail(self, code: Problem, detail: str = "") -> StepError:
        self.last_error = code
        return StepError(code, detail)

    def _override(
        self, operator_id: str, role: Role, action: str, subject: str | None, reason: str
    ) -> Override:
        if role == "technician":  # (authority() refuses them already: their rank is below)
            raise self._fail(Problem.AGENT_NEEDED)
        try:
            return Override(
                operator_id=operator_id,
                role=role,
                # not typed precisely here: action is one of the Literal's values, chosen by the
                # caller
                action=action,  # type: ignore[arg-type]
                subject=subject,
                reason=reason.strip() or "-",
                at=datetime.now(UTC),
            )
        except ValidationError as exc:
            raise self._fail(Problem.OVERRIDE_INVALID, str(exc.errors()[0]["loc"])) from exc

    def authority(self, operator_id: str, pin: str, needs: Role) -> tuple[str, Role]:
        """Who authorises an action, and their role: the agent on duty when no PIN is given
        (and no other id), else an operator's PIN check. StepError ``supervisor_needed``,
        ``shift_needed`` (nobody on duty and no PIN), or as :meth:`Operators.authenticate`."""
        operator_id = operator_id.strip()
        shift = self.on_duty
        if not pin and shift is not None and operator_id in ("", shift.operator_id):
            if _ROLE_RANK[shift.role] < _ROLE_RANK[needs]:
                raise StepError(Problem.SUPERVISOR_NEEDED)
            return shift.operator_id, shift.role
        if not operator_id and not pin:
            raise StepError(Problem.SHIFT_NEEDED)
        return operator_id, self.operators.authenticate(operator_id, pin, needs)

    def _authorise(self, operator_id: str, pin: str, needs: Role) -> tuple[str, Role]:
        """:meth:`authority` for an override inside the enrolment: a refusal is shown like
        every other error."""
        try:
            return self.authority(operator_id, pin, needs)
        except StepError as exc:
            raise self._fail(exc.code) from exc

    # ------------------------------------------------------------------------ shifts
    @property
    def on_duty(self) -> Shift | None:
        """The open shift, if any (ended by its length, or when the registry's list no longer
        has the agent)."""
        shift = self.shift
        if shift is None:
            return None
        if time.time() - shift.started > SHIFT_HOURS * 3600 or (
            self.operators.role_of(shift.operator_id) != shift.role
        ):
            self.shift = None
            return None
        return shift

    def sign_in(self, operator_id: str, pin: str) -> Shift:
        """An agent starts their shift (StepError ``operator_denied`` / ``operator_locked``;
        the lockout counts as for any PIN)."""
        role = self.operators.authenticate(operator_id.strip(), pin, "operator")
        self.shift = Shift(operator_id.strip(), role, time.time())
        return self.shift

    @property
    def technician(self) -> Shift | None:
        """The technician signed in on the technician page, until they sign out or leave it
        idle for ``TECHNICIAN_IDLE_MINUTES``."""
        visit = self._technician
        if visit is None:
            return None
        if time.time() - visit.started > TECHNICIAN_IDLE_MINUTES * 60 or (
            self.operators.role_of(visit.operator_id) != "technician"
        ):
            self._technician = None
            return None
        self._technician = Shift(visit.operator_id, visit.role, time.time())  # still active
        return self._technician

    def technician_sign_in(self, operator_id: str, pin: str) -> Shift:
        """A technician opens the technician page (StepError ``technician_needed`` for an agent;
        ``operator_denied`` / ``operator_locked`` as for any PIN)."""
        role = self.operators.authenticate(operator_id.strip(), pin, "technician")
        self._technician = Shift(operator_id.strip(), role, time.time())
        return self._technician

    def technician_sign_out(self) -> None:
        """The technician leaves the technician page."""
        self._technician = None

    def sign_out(self) -> None:
        """The agent ends their shift."""
        self.shift = None

    def _device(self, prefix: str, call: Callable[..., _T], *args: object) -> _T:
        """Call the device daemon; its failures become StepErrors ``<prefix>_<code>``, or
        ``devices_unavailable`` when the daemon does not answer."""
        try:
            return call(*args)
        except DaemonUnavailable as exc:
            raise self._fail(Problem.DEVICES_UNAVAILABLE, str(exc)) from exc
        except DeviceError as exc:
            raise self._fail(Problem.from_device(prefix, exc.code), str(exc)) from exc

    # ------------------------------------------------------------------------ welcome, language
    def start(self) -> None:
        """The citizen touched the welcome screen."""
        with self._lock:
            self._expect(Step.WELCOME, Step.RECEIPT)
            if self.step == Step.RECEIPT:
                self.cancel()
            self.step, self.last_error = Step.LANGUAGE, None
            self._touch()

    def back(self) -> None:
        """One step back where nothing captured is lost: language → welcome, document →
        language, face → document (the document is read again)."""
        with self._lock:
            self._touch()
            if self.step == Step.LANGUAGE:
                self.cancel()
            elif self.step == Step.DOCUMENT:
                self.step, self.last_error = Step.LANGUAGE, None
            elif self.step == Step.FACE:
                language = self.data.language
                self.data.wipe()
                self.data.language = language
                self.step, self.last_error = Step.DOCUMENT, None
            else:
                raise StepError(Problem.WRONG_STEP, f"no way back from {self.step}")

    def set_language(self, language: str) -> None:
        """Switch the language at any step (the switch on every page); the step stays."""
        with self._lock:
            if language not in LANGUAGES:
                raise self._fail(Problem.BAD_LANGUAGE)
            self.data.language = language
            self._touch()

    def choose_language(self, language: str) -> None:
        """Set the language for the rest of the session."""
        with self._lock:
            self._expect(Step.LANGUAGE, Step.DOCUMENT)
            if language not in LANGUAGES:
                raise self._fail(Problem.BAD_LANGUAGE)
            self.data.language = language
            self.step, self.last_error = Step.DOCUMENT, None
            self._touch()

    # ------------------------------------------------------------------------ document
    def scan_document(self) -> None:
        """Read the document's MRZ from the document camera (OCR, every check digit verified)
        and open the chip with it: nothing to type."""
        with self._lock:
            self._expect(Step.DOCUMENT)
            self._touch()
            image = self._device("document", self.devices.capture_document)
            try:
                mrz = document_camera.read_mrz(image)
            except document_camera.MRZUnreadable as exc:
                raise self._fail(Problem.DOCUMENT_UNREADABLE, str(exc)) from exc
            finally:
                del image
            self._open_chip({"mrz": "\n".join(mrz.lines)})

    def read_card(self, number: str, birth: str, expiry: str) -> None:
        """Read the ID card's chip with the document number and the two dates as printed on
        the card (typed: ``15/02/1990``, ``15.02.1990``, ISO or YYMMDD). What was typed is kept
        for the form after an error, and a wrong field is named (``card_bad_*``)."""
        with self._lock:
            self._expect(Step.DOCUMENT)
            self._touch()
            d = self.data
            d.typed = {"number": number.strip(), "birth": birth.strip(), "expiry": expiry.strip()}
            clean = re.sub(r"[\s\-/.<]", "", _ascii_digits(number)).upper()
            if not re.fullmatch(r"[A-Z0-9]{1,20}", clean):
                raise self._fail(Problem.CARD_BAD_NUMBER)
            key = {"number": clean}
            for name, value, problem in (
                ("birth", birth, Problem.CARD_BAD_BIRTH),
                ("expiry", expiry, Problem.CARD_BAD_EXPIRY),
            ):
                try:
                    key[name] = mrz_date(value)
                except ValueError as exc:
                    raise self._fail(problem) from exc
            self._open_chip(key)

    def read_card_can(self, can: str) -> None:
        """Read the ID card's chip with its card access number: the 6 digits printed on the
        front of a CNIE (PACE-CAN), typed; Arabic-Indic digits and spaces are accepted."""
        with self._lock:
            self._expect(Step.DOCUMENT)
            self._touch()
            self.data.typed = {"can": can.strip()}
            clean = re.sub(r"\s", "", _ascii_digits(can))
            if not re.fullmatch(r"\d{6}", clean):
                raise self._fail(Problem.CARD_BAD_CAN)
            self._open_chip({"can": clean})

    def _open_chip(self, key: dict[str, str]) -> None:
        """Read the chip with ``key`` and take the document from it (the lock is held)."""
        read = self._device("card", self.devices.read_document, key)
        try:
            chip = verify_chip(read, self.trust)
        except lds.LDSError as exc:
            raise self._fail(Problem.CARD_CHIP_ERROR, str(exc)) from exc
        pa = chip.passive_authentication
        if pa.status != "valid":
            # a forged chip, or one whose CSCA is not in this kiosk's trust folder (the
            # daemon's own verdict is not taken): no enrolment from it, a person must look
            raise self._fail(Problem.CARD_NOT_AUTHENTIC, f"{pa.status}: {pa.reason}")
        if read.fields.get("active_authentication") == "failed":
            # the chip could not sign the kiosk's challenge with its DG15 key: a copy
            raise self._fail(
                Problem.CARD_NOT_AUTHENTIC,
                f"active authentication failed: {read.fields.get('active_authentication_reason')}",
            )
        m = chip.mrz  # from the verified DG1, not from the daemon's summary
        doc_type = (
            DocumentType.PASSPORT
            if m.document_type.startswith("P")
            else DocumentType.CNIE
            if m.issuing_state == "MAR"
            else DocumentType.RESIDENCE_CARD
        )
        d = self.data
        d.source, d.passive_authentication, d.chip_face = (
            DocumentSource.CHIP,
            pa.status,
            chip.face_image,
        )
        d.chip_checks = {
            k: str(read.fields[k])
            for k in ("access_control", "chip_authentication", "active_authentication")
            if read.fields.get(k) is not None
        }
        d.fields = {
            "surname_latin": m.primary_identifier.title(),
            "given_names_latin": m.secondary_identifier.title(),
            "date_of_birth": m.birth_date.isoformat() if m.birth_date else None,
            "sex": m.sex if m.sex in ("F", "M") else "X",
            "nationality": m.nationality,
            "document": Document(
                type=doc_type, number=m.document_number, issuing_country=m.issuing_state
            ),
        }
        d.typed = {}
        self.step, self.last_error = Step.FACE, None

    def no_document(
        self,
        kind: Literal["birth_certificate", "witnesses"],
        fields: dict[str, str],
        operator_id: str,
        pin: str,
        reason: str,
        birth_certificate: str | None = None,
        witnesses: list[str] | None = None,
    ) -> None:
        """Enrol without an ID card, on a supervisor's authority: from a birth-certificate
        extract (its number), or vouched for by two registered people (their IDCS). ``fields``
        are the names, date of birth (ISO), sex and nationality the supervisor checked."""
        with self._lock:
            self._expect(Step.DOCUMENT)
            self._touch()
            operator_id, role = self._authorise(operator_id, pin, "supervisor")
            d = self.data
            doc = None
            if kind == "birth_certificate":
                number = (birth_certificate or "").strip().upper()
                if not number:
                    raise self._fail(Problem.BIRTH_CERTIFICATE_MISSING)
                doc = Document(
                    type=DocumentType.BIRTH_CERTIFICATE,
                    number=number.replace("/", "").replace("-", "")[:20],
                    issuing_country="MAR",
                )
                d.birth_certificate = number
            else:
                ws = [re.sub(r"\s", "", _ascii_digits(w)) for w in witnesses or [] if w.strip()]
                if len(set(ws)) != 2 or not all(idcs_well_formed(w) for w in ws):
                    raise self._fail(Problem.WITNESSES_INVALID)
                self._check_witnesses(ws, operator_id)
                d.witnesses = ws
            try:
                born = typed_date(fields.get("date_of_birth", "")).isoformat()
            except ValueError as exc:
                raise self._fail(Problem.REVIEW_INVALID, "date_of_birth") from exc
            if fields.get("sex") not in ("F", "M", "X"):  # no default: the supervisor chooses
                raise self._fail(Problem.REVIEW_INVALID, "sex")
            d.source = DocumentSource(kind)
            d.fields = {
                "surname_latin": fields.get("surname_latin", ""),
                "given_names_latin": fields.get("given_names_latin", ""),
                "date_of_birth": born,
                "sex": fields["sex"],
                "nationality": fields.get("nationality", "MAR"),
                "document": doc,
            }
            d.overrides.append(self._override(operator_id, role, "no_document", kind, reason))
            self.step, self.last_error = Step.FACE, None

    def _check_witnesses(self, witnesses: list[str], operator_id: str) -> None:
        """Ask the registry whether the two witnesses are registered, before anyone spends
        minutes on capture (StepError ``witnesses_not_registered``). Offline, the enrolment
        goes on: the registry checks them again when the packet arrives."""
        if self.ask is None:
            return
        query = WitnessQuery(
            query_id=uuid.uuid4(),
            kiosk_id=self.settings.kiosk_id,
            witnesses=witnesses,
            operator_id=operator_id,
        )
        try:
            answer = self.ask(query)
        except PacketRefused as exc:
            if exc.status_code == 429:
                raise self._fail(Problem.REGISTRY_RATE_LIMITED) from exc
            return  # the intake will answer for it
        except (AnswerNotAuthentic, httpx.HTTPError, OSError):
            return
        if answer.outcome != "registered":
            raise self._fail(Problem.WITNESSES_NOT_REGISTERED)

    def check_receipt(self, number: str, born: str) -> QueryAnswer:
        """A citizen checks a receipt (any kiosk's) with their date of birth, between
        enrolments. StepError ``card_bad_birth`` for a date that is not one,
        ``registry_unavailable`` when the registry cannot be asked, ``registry_rate_limited``."""
        with self._lock:
            if self.step not in (Step.WELCOME, Step.RECEIPT):
                raise StepError(Problem.WRONG_STEP)
            try:
                day = typed_date(born)
            except ValueError as exc:
                raise StepError(Problem.CARD_BAD_BIRTH) from exc
            clean = re.sub(r"\s", "", _ascii_digits(number)).upper()
            if not clean.startswith("RNP-"):
                clean = "RNP-" + clean.removeprefix("RNP")
            try:
                query = ReceiptQuery(
                    query_id=uuid.uuid4(),
                    kiosk_id=self.settings.kiosk_id,
                    receipt_number=clean,
                    date_of_birth=day,
                )
            except ValidationError as exc:
                raise StepError(Problem.RECEIPT_NUMBER_INVALID) from exc
            if self.ask is None:
                raise StepError(Problem.REGISTRY_UNAVAILABLE)
            with registry_errors():
                return self.ask(query)

    # ------------------------------------------------------------------------ face
    def _shoot(
        self,
        challenge: Literal["left", "right"],
        on_candidate: Callable[[FaceCapture], None] | None = None,
    ) -> FaceCapture:
        """Auto-capture, liveness challenge, template (StepError on any failure). A capture
        that failed liveness only goes to ``on_candidate``."""
        frames = self._device("face", self.devices.capture_face, challenge)
        try:
            return finish_face(
                frames.image,
                frames.challenge_frames,
                challenge,
                frames.quality_score,
                self._config(frames.model, CameraConfig),
                frames.timestamps,
            )
        except FaceCaptureFailed as exc:
            if exc.capture is not None and on_candidate is not None:
                on_candidate(exc.capture)
            raise self._fail(_FACE_STAGE_PROBLEMS[exc.stage], ", ".join(exc.reasons)) from exc
        finally:
            del frames  # the raw frames are not kept (received buffers are read-only)

    def live_face(self, operator_id: str, pin: str) -> tuple[str, FaceCapture]:
        """A live face between enrolments, on an agent's authority (the agent, and the
        capture): what a request to show a duplicate citizen their IDCS carries. StepError as
        for an enrolment's face."""
        with self._lock:
            if self.step not in (Step.WELCOME, Step.LANGUAGE, Step.RECEIPT):
                raise self._fail(Problem.WRONG_STEP)  # never inside someone's enrolment
            who, _ = self._authorise(operator_id, pin, "operator")
            return who, self._shoot("left")

    def citizen_face(self) -> FaceCapture:
        """A citizen's own live face between enrolments (to open their household): StepError
        as for an enrolment's face. The caller keeps the template only as long as it needs
        it."""
        with self._lock:
            if self.step not in (Step.WELCOME, Step.RECEIPT):
                raise self._fail(Problem.WRONG_STEP)  # never inside someone's enrolment
            self._touch()
            try:
                return self._shoot("left")
            finally:
                self.last_error = None  # the household desk shows its own problems

    def capture_face(self, challenge: Literal["left", "right"] = "left") -> None:
        """Auto-capture, liveness challenge, template; 1:1 against the chip photo if any.
        After ``face_attempts`` failed captures, ``face_supervisor``: a supervisor accepts the
        best capture (:meth:`waive_face`) or allows more tries (:meth:`allow_face_retry`)."""
        with self._lock:
            self._expect(Step.FACE)
            self._touch()
            d = self.data
            if d.face_failures >= self.settings.face_attempts:
                raise self._fail(Problem.FACE_SUPERVISOR)

            def keep_best(candidate: FaceCapture) -> None:
                best = d.face_candidate
                if best is None or candidate.quality_score > best.quality_score:
                    if best is not None:
                        best.template.fill(0)
                    d.face_candidate = candidate

            try:
                shot = self._shoot(challenge, keep_best)
            except StepError as exc:
                if exc.code in _FACE_STAGE_PROBLEMS.values() or exc.code == Problem.FACE_NO_FACE:
                    d.face_failures += 1
                    if d.face_failures >= self.settings.face_attempts:
                        raise self._fail(Problem.FACE_SUPERVISOR, exc.detail) from exc
                raise
            self._take_face(shot)

    def _take_face(self, shot: FaceCapture) -> None:
        """Keep ``shot`` as the person's face and check it against the chip photo (1:1)."""
        d = self.data
        d.face_template, d.face_token = shot.template, shot.token_jpeg
        d.face_quality, d.face_liveness = shot.quality_score, shot.liveness.passed
        d.face_mismatch = False
        if d.chip_face:
            try:
                chip_template = face.encode(face.decode_image(d.chip_face), thresholds=None)
            except face.FaceError as exc:
                raise self._fail(Problem.FACE_CHIP_PHOTO_UNUSABLE, str(exc)) from exc
            score = face.compare(shot.template, chip_template)
            d.face_similarity = score
            if score < face.threshold_for_fmr(self.settings.face_document_fmr):
                d.face_mismatch = True
                raise self._fail(Problem.FACE_DOCUMENT_MISMATCH)
        self.step, self.last_error = Step.FINGERS, None

    def waive_face(self, operator_id: str, pin: str, reason: str) -> None:
        """After ``face_attempts`` failures, a supervisor accepts the best capture that had a
        face (it failed liveness): recorded in the packet; the registry holds such an
        enrolment for adjudication. StepError ``nothing_to_override`` when no capture had a
        usable face (then: more tries, or cancel)."""
        with self._lock:
            self._expect(Step.FACE)
            d = self.data
            if d.face_failures < self.settings.face_attempts or d.face_candidate is None:
                raise self._fail(Problem.NOTHING_TO_OVERRIDE)
            operator_id, role = self._authorise(operator_id, pin, "supervisor")
            d.overrides.append(
                self._override(operator_id, role, "face_capture_waived", None, reason)
            )
            shot, d.face_candidate = d.face_candidate, None
            self._touch()
            self._take_face(shot)

    def allow_face_retry(self, operator_id: str, pin: str, reason: str) -> None:
        """After ``face_attempts`` failures, a supervisor allows as many tries again
        (recorded in the packet)."""
        with self._lock:
            self._expect(Step.FACE)
            if self.data.face_failures < self.settings.face_attempts:
                raise self._fail(Problem.NOTHING_TO_OVERRIDE)
            operator_id, role = self._authorise(operator_id, pin, "supervisor")
            self.data.overrides.append(
                self._override(operator_id, role, "face_retry", None, reason)
            )
            self.data.face_failures = 0
            self.last_error = None
            self._touch()

    def accept_face_mismatch(self, operator_id: str, pin: str, reason: str) -> None:
        """A supervisor, who saw the chip photo beside the capture, confirms the person is the
        document's holder despite the 1:1 score (e.g. an old photo); recorded in the packet."""
        with self._lock:
            self._expect(Step.FACE)
            if not self.data.face_mismatch:
                raise self._fail(Problem.NOTHING_TO_OVERRIDE)
            operator_id, role = self._authorise(operator_id, pin, "supervisor")
            self.data.overrides.append(
                self._override(operator_id, role, "face_document_mismatch", None, reason)
            )
            self.data.face_mismatch = False
            self.step, self.last_error = Step.FINGERS, None
            self._touch()

    def photos(self) -> dict[str, bytes]:
        """The images the screen may show during the enrolment (never stored by the UI): the
        capture (``capture``), the chip's photo (``chip``) and the best failed capture a
        supervisor may accept (``candidate``), when there are."""
        d = self.data
        out = {}
        if d.face_token:
            out["capture"] = d.face_token
        if d.chip_face:
            out["chip"] = d.chip_face
        if d.face_candidate is not None:
            out["candidate"] = d.face_candidate.token_jpeg
        return out

    # ------------------------------------------------------------------------ fingers
    @property
    def next_finger(self) -> int | None:
        """The position to capture next, or None when all ten are done."""
        d = self.data
        return next((p for p in FINGER_ORDER if p not in d.fingers and p not in d.exceptions), None)

    def capture_finger(self) -> Literal["accepted", "retry"]:
        """Capture the next finger. ``accepted`` moves on; ``retry`` (poor quality, or the
        same finger as an earlier one) asks again. StepError ``finger_no_finger`` and
        ``finger_unusable`` (after the last re-capture) need an operator's exception."""
        with self._lock:
            self._expect(Step.FINGERS)
            self._touch()
            pos = self.next_finger
            if pos is None:
                raise self._fail(Problem.WRONG_STEP)
            d = self.data
            attempt = d.attempts.get(pos, 0)
            if attempt > self.settings.max_recaptures:
                raise self._fail(Problem.FINGER_UNUSABLE)
            shot = self._device("finger", self.devices.capture_finger, pos)
            reader = self._config(shot.model, FingerprintConfig)
            d.attempts[pos] = attempt + 1
            try:
                template = fp.extract(shot.image, dpi=shot.dpi, position=pos)
                quality = template.quality
            except fp.FingerprintError:
                template, quality = None, 0
            if template is None or quality < reader.capture.min_quality:
                if attempt + 1 > self.settings.max_recaptures:
                    raise self._fail(Problem.FINGER_UNUSABLE)
                self.last_error = Problem.FINGER_POOR_QUALITY
                return "retry"
            matcher = fp.FingerprintMatcher(template)
            for other in d.fingers.values():
                if matcher.match(other.template) >= SAME_FINGER_BITS:
                    if attempt + 1 > self.settings.max_recaptures:
                        raise self._fail(Problem.FINGER_UNUSABLE)
                    self.last_error = Problem.FINGER_SAME_AS_BEFORE
                    return "retry"
            record = fp.FingerImage(shot.image, pos, shot.dpi, quality).to_iso19794_4()
            d.fingers[pos] = Finger(pos, template, quality, record)
            self.last_error = None
            self._after_finger()
            return "accepted"

    def finger_exception(self, reason: str, operator_id: str, pin: str) -> None:
        """Record the next finger as missing or unusable, on an operator's authority."""
        with self._lock:
            self._expect(Step.FINGERS)
            self._touch()
            pos = self.next_finger
            if pos is None:
                raise self._fail(Problem.WRONG_STEP)
            if reason not in ("amputated", "bandaged", "injured", "unusable", "other"):
                raise self._fail(Problem.BAD_REASON)
            operator_id, role = self._authorise(operator_id, pin, "operator")
            self.data.exceptions[pos] = reason
            self.data.overrides.append(
                self._override(operator_id, role, "finger_exception", str(pos), reason)
            )
            self.last_error = None
            self._after_finger()

    def _after_finger(self) -> None:
        # ten exceptions are allowed (e.g. a bilateral amputee): the face alone then
        if self.next_finger is None:
            self.step = Step.REVIEW

    # ------------------------------------------------------------------------ review, submit
    def review(self) -> dict[str, object]:
        """What the citizen is asked to confirm (no biometric data)."""
        d = self.data
        doc = d.fields.get("document")
        return {
            **{k: v for k, v in d.fields.items() if k != "document"},
            "document": doc.model_dump(mode="json") if isinstance(doc, Document) else None,
            "document_number_printed": d.birth_certificate,  # as written, punctuation kept
            "source": d.source,
            "fingers_captured": sorted(d.fingers),
            "finger_exceptions": dict(sorted(d.exceptions.items())),
            "face_quality": d.face_quality,
        }

    def submit(
        self,
        address: str,
        place_of_birth: str,
        surname_arabic: str = "",
        given_names_arabic: str = "",
    ) -> Entry:
        """The citizen confirmed: build the packet and commit it to the outbox. Only then is
        the receipt shown; the session keeps only the outbox entry."""
        with self._lock:
            self._expect(Step.REVIEW)
            self._touch()
            d = self.data
            try:
                demographics = Demographics.model_validate(
                    {
                        **d.fields,
                        "address": address,
                        "place_of_birth": place_of_birth,
                        "surname_arabic": surname_arabic.strip() or None,
                        "given_names_arabic": given_names_arabic.strip() or None,
                    }
                )
            except ValidationError as exc:
                fields = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
                raise self._fail(Problem.REVIEW_INVALID, ",".join(fields)) from exc
            try:
                status = self.devices.status()
                d.devices = [
                    DeviceInfo(
                        kind=x["kind"],
                        model=x["model"],
                        device_id=x["device_id"],
                        firmware=x["firmware"],
                    )
                    # not typed precisely here: the daemon's JSON list of devices
                    for x in status["devices"]  # type: ignore[attr-defined]
                ]
            except DeviceError:
                pass  # the device list is informative; the capture already happened
            assert d.face_template is not None and d.face_token is not None and d.source
            capture = CaptureInfo(
                document_source=d.source,
                birth_certificate_number=d.birth_certificate,
                witnesses=d.witnesses,
                # not typed precisely here: the daemon's verdict string; CaptureInfo validates it
                passive_authentication=d.passive_authentication,  # type: ignore[arg-type]
                # not typed precisely here: the daemon's strings; CaptureInfo validates them
                **d.chip_checks,  # type: ignore[arg-type]
                face_quality=d.face_quality,
                face_liveness=d.face_liveness,
                face_document_similarity=d.face_similarity,
                finger_exceptions=[
                    FingerException.model_validate({"position": p, "reason": r})
                    for p, r in sorted(d.exceptions.items())
                ],
                overrides=d.overrides,
                devices=d.devices,
                # not typed precisely here: one of the kiosk's four languages (the UI offers no
                # other); CaptureInfo validates it
                language=d.language,  # type: ignore[arg-type]
            )
            fingers = [
                FingerprintRecord(
                    position=fp.FingerPosition(f.position),
                    quality=f.quality,
                    data=f.template.to_iso19794_2(),
                    image=f.image,
                )
                for f in sorted(d.fingers.values(), key=lambda f: f.position)
            ]
            packet = build_packet(
                self.settings.kiosk_id,
                demographics,
                [d.face_template],
                d.face_token,
                fingerprints=fingers,
                capture=capture,
            )
            shift = self.on_duty
            entry = self.outbox.put(packet, shift.operator_id if shift else None)  # on disk first
            language = d.language
            d.wipe()
            d.language = language
            self.receipt = entry
            self.step, self.last_error = Step.RECEIPT, None
            if self.on_submitted is not None:
                self.on_submitted(entry)
            return entry


def _ascii_digits(value: str) -> str:
    """``value`` with Arabic-Indic and other Unicode digits as ASCII digits."""
    return "".join(str(unicodedata.digit(c)) if c.isdigit() else c for c in value)


def typed_date(value: str) -> date:
    """A date typed as people write it: ``15/02/1990``, ``15.02.1990``, ``15-02-1990``,
    ``15 02 1990`` (Arabic-Indic digits too) or ``1990-02-15`` (a date picker). ValueError if
    it is none of these or not a real date."""
    v = _ascii_digits(value).strip()
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", v)
    if m:
        y, mo, dd = (int(g) for g in m.groups())
    else:
        m = re.fullmatch(r"(\d{1,2})\s*[/.\- ]\s*(\d{1,2})\s*[/.\- ]\s*(\d{4})", v)
        if not m:
            raise ValueError("not a date")
        dd, mo, y = (int(g) for g in m.groups())
    return date(y, mo, dd)


def mrz_date(value: str) -> str:
    """A typed date (:func:`typed_date`, or ``900215`` as printed in the MRZ) as the MRZ's
    YYMMDD. ValueError if it is not a real date."""
    v = _ascii_digits(value).strip()
    if re.fullmatch(r"\d{6}", v):
        date(2000 + int(v[:2]), int(v[2:4]), int(v[4:]))  # a real day (any century's leap year)
        return v
    return typed_date(v).strftime("%y%m%d")


def display_date(iso: object) -> str:
    """An ISO date as Moroccans write it (DD/MM/YYYY); anything else unchanged."""
    try:
        return date.fromisoformat(str(iso)).strftime("%d/%m/%Y")
    except ValueError:
        return str(iso or "")
