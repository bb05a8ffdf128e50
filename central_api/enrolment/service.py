"""Intake of enrolment packets (open, authenticate, store), kiosks, and signed status answers.

Intake runs in three steps so that no database transaction waits on cryptography or image
work: :func:`open_packet` (decrypt, verify the kiosk's signature against the cached
:class:`KioskDirectory`, validate the packet; no database), the intake policy
(:mod:`central_api.enrolment.policy`; CPU only), and :func:`store` (one short transaction:
replay guard, idempotency, witnesses, the encrypted row and its audit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar, get_args

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from biometrics import face
from biometrics.fingerprint import FingerprintTemplate
from central_api.audit.models import AuditEvent
from central_api.audit.service import count_recent, fingerprint, record
from central_api.config import Settings
from central_api.crypto import FieldCipher
from central_api.db import utcnow
from central_api.enrolment.exceptions import (
    ClockSkew,
    InvalidPacket,
    KioskDeactivated,
    NotAuthenticated,
    PacketConflict,
    RateLimited,
    ReplayedPacket,
    UndecryptablePacket,
    WitnessesNotRegistered,
)
from central_api.enrolment.models import Enrolment, Kiosk, KioskOperator, PacketSend
from central_api.enrolment.schemas import (
    EnrolmentPacket,
    EnrolmentState,
    EnrolmentStatus,
    Envelope,
    FingerprintRecord,
    KioskRole,
    OperatorEntry,
    OperatorList,
    QueryAnswer,
    QueryEnvelope,
    ReceiptQuery,
    RevealEnvelope,
    RevealRequest,
    SealError,
    SendEnvelope,
    WitnessQuery,
    open_sealed,
    pin_hash,
    receipt_number,
    sign_status,
)
from central_api.exceptions import InvalidRequest, RegistryError
from central_api.identity.models import Person

MESSAGES = {
    EnrolmentState.RECEIVED: "Received; the identity check has not started yet.",
    EnrolmentState.PROCESSING: "The identity check is running.",
    EnrolmentState.ISSUED: "Enrolment complete: the identifier (IDCS) has been issued.",
    EnrolmentState.DUPLICATE: (
        "This person is already registered; no new identifier is issued. "
        "Please see an agent with this receipt."
    ),
    EnrolmentState.ADJUDICATION: (
        "An officer must review this enrolment. Keep the receipt and check back later."
    ),
    EnrolmentState.REJECTED: (
        "The enrolment could not be processed. Please see an agent with this receipt."
    ),
    EnrolmentState.MORE_INFORMATION: (
        "An officer needs more information: please come back to an enrolment centre with "
        "this receipt and your documents."
    ),
}


_E = TypeVar("_E", bound=Envelope)


# ---------------------------------------------------------------------------------- kiosks
@dataclass(frozen=True)
class KioskKey:
    """A registered kiosk's id, Ed25519 public key and whether it may send."""

    id: str
    public_key: bytes
    active: bool


class KioskDirectory:
    """The registered kiosks' keys, cached so that a request can be authenticated (and an
    unknown sender turned away before its body is read) without a database round trip.

    The cache is re-read every ``ttl`` seconds; a kiosk not found, or whose signature does not
    verify, is looked up again by its id (one primary-key read), so a kiosk just added or
    re-keyed is known at once. :func:`still_active` re-checks in the database whatever is
    stored or answered: a revocation takes effect at once."""

    def __init__(self, factory: sessionmaker[Session], ttl: float = 5.0) -> None:
        self._factory, self._ttl = factory, ttl
        self._keys: dict[str, KioskKey] = {}
        self._loaded = -1e9
        self._lock = threading.Lock()

    def _one(self, kiosk_id: str) -> KioskKey | None:
        with self._factory() as s:
            k = s.get(Kiosk, kiosk_id)
            key = None if k is None else KioskKey(k.id, bytes(k.public_key), k.active)
        with self._lock:
            if key is None:
                self._keys.pop(kiosk_id, None)
            else:
                self._keys[kiosk_id] = key
        return key

    def cached(self, kiosk_id: str) -> bool | None:
        """True if the cache, still fresh, knows ``kiosk_id``; None if only the database can
        tell (no I/O here: the intake gate asks this on its event loop)."""
        if time.monotonic() - self._loaded > self._ttl or kiosk_id not in self._keys:
            return None
        return True

    def get(self, kiosk_id: str) -> KioskKey | None:
        """The kiosk's key, or None if it is not registered."""
        if time.monotonic() - self._loaded > self._ttl:
            with self._factory() as s:
                rows = s.execute(select(Kiosk.id, Kiosk.public_key, Kiosk.active)).all()
            with self._lock:
                self._keys = {r.id: KioskKey(r.id, bytes(r.public_key), r.active) for r in rows}
                self._loaded = time.monotonic()
        return self._keys.get(kiosk_id) or self._one(kiosk_id)

    def authenticate(self, kiosk_id: str, message: bytes, signature: bytes) -> KioskKey:
        """:func:`verify_kiosk` against the cached key, looked up again once if it fails."""
        try:
            return verify_kiosk(self.get(kiosk_id), message, signature)
        except (NotAuthenticated, KioskDeactivated):
            return verify_kiosk(self._one(kiosk_id), message, signature)


# Verifying against this key when the kiosk is unknown makes an unknown kiosk cost the same
# time as a wrong signature: both answer 401 not_authenticated, alike. (The public key of
# SHA-256("rnp nobody") as an Ed25519 private key: no kiosk holds it.)
_NOBODY = bytes.fromhex("6c11ecc2282d5818a25b1871823cd9bd7bcbb225b0ba2701cd11bb8a2eb0ef9b")


def verify_kiosk(key: KioskKey | None, message: bytes, signature: bytes) -> KioskKey:
    """The kiosk whose registered key signed ``message``. Raises NotAuthenticated (unknown
    kiosk or wrong signature: indistinguishable), or KioskDeactivated (a revoked kiosk that
    proved who it is)."""
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key if key else _NOBODY).verify(
            signature, message
        )
        valid = key is not None
    except (InvalidSignature, ValueError):
        valid = False
    if not valid or key is None:
        raise NotAuthenticated()
    if not key.active:
        raise KioskDeactivated(f"kiosk {key.id} has been deactivated")
    return key


def register_kiosk(session: Session, kiosk_id: str, public_key: bytes, actor: str) -> Kiosk:
    """Register a new kiosk with its raw 32-byte Ed25519 public key (InvalidRequest if the id
    is taken: use :func:`rotate_kiosk`)."""
    Ed25519PublicKey.from_public_bytes(public_key)  # raises ValueError if malformed
    if session.get(Kiosk, kiosk_id) is not None:
        raise InvalidRequest(f"kiosk {kiosk_id} is already registered (use kiosk-rotate)")
    kiosk = Kiosk(id=kiosk_id, public_key=public_key, active=True)
    session.add(kiosk)
    record(session, actor, "kiosk.registered", "kiosk", kiosk_id)
    return kiosk


def _kiosk(session: Session, kiosk_id: str) -> Kiosk:
    kiosk = session.get(Kiosk, kiosk_id, with_for_update=True)
    if kiosk is None:
        raise InvalidRequest(f"no kiosk {kiosk_id}")
    return kiosk


def rotate_kiosk(session: Session, kiosk_id: str, public_key: bytes, actor: str) -> Kiosk:
    """Replace a kiosk's key (the old one stops working at once) and re-activate it."""
    Ed25519PublicKey.from_public_bytes(public_key)
    kiosk = _kiosk(session, kiosk_id)
    old = hashlib.sha256(kiosk.public_key).hexdigest()[:16]
    kiosk.public_key, kiosk.active = public_key, True
    new = hashlib.sha256(public_key).hexdigest()[:16]
    record(session, actor, "kiosk.rotated", "kiosk", kiosk_id, old_key=old, new_key=new)
    return kiosk


def deactivate_kiosk(session: Session, kiosk_id: str, actor: str, reason: str) -> Kiosk:
    """Revoke a kiosk: its new packets and reads get 403 kiosk_deactivated."""
    kiosk = _kiosk(session, kiosk_id)
    kiosk.active = False
    record(session, actor, "kiosk.deactivated", "kiosk", kiosk_id, reason=reason[:200])
    return kiosk


def list_kiosks(session: Session) -> list[Kiosk]:
    """Every registered kiosk, by id."""
    return list(session.scalars(select(Kiosk).order_by(Kiosk.id)))


# ------------------------------------------------------------------------ kiosk operators
_KIOSK_OPERATOR_ID = re.compile(r"^[A-Za-z0-9_.\-]{2,40}$")


def _next_version(session: Session) -> int:
    return int(session.scalar(select(func.max(KioskOperator.version))) or 0) + 1


def _kiosk_scope(kiosks: str) -> str:
    scope = ",".join(sorted({k.strip() for k in kiosks.split(",") if k.strip()})) or "*"
    if len(scope) > 2000 or ("*" in scope and scope != "*"):
        raise InvalidRequest("kiosks: '*' for every kiosk, or kiosk ids separated by commas")
    return scope


def set_kiosk_operator(
    session: Session, operator_id: str, role: str, kiosks: str, actor: str
) -> tuple[KioskOperator, str]:
    """Create an agent or supervisor with a new 6-digit PIN, or give an existing one a new
    PIN, role and kiosks (and enable them); returns the row and the PIN (shown once)."""
    if not _KIOSK_OPERATOR_ID.match(operator_id):
        raise InvalidRequest("an operator id is 2-40 letters, digits, '.', '_' or '-'")
    if role not in get_args(KioskRole):
        raise InvalidRequest("a kiosk operator's role is operator, supervisor or technician")
    pin = "".join(secrets.choice("0123456789") for _ in range(6))
    salt = secrets.token_bytes(16)
    version = _next_version(session)
    row = session.get(KioskOperator, operator_id, with_for_update=True)
    if row is None:
        row = KioskOperator(id=operator_id)
        session.add(row)
    row.role, row.kiosks, row.active = role, _kiosk_scope(kiosks), True
    row.salt, row.pin_hash = salt.hex(), pin_hash(pin, salt)
    row.version, row.updated_at = version, utcnow()
    record(session, actor, "kiosk_operator.set", "kiosk_operator", operator_id, role=role)
    return row, pin


def disable_kiosk_operator(session: Session, operator_id: str, actor: str, reason: str) -> None:
    """Take an agent off every kiosk (at each kiosk's next sync)."""
    version = _next_version(session)
    row = session.get(KioskOperator, operator_id, with_for_update=True)
    if row is None:
        raise InvalidRequest(f"no kiosk operator {operator_id}")
    row.active, row.version, row.updated_at = False, version, utcnow()
    record(session, actor, "kiosk_operator.disabled", "kiosk_operator", operator_id, reason=reason)


def list_kiosk_operators(session: Session) -> list[KioskOperator]:
    """Every kiosk operator, by id."""
    return list(session.scalars(select(KioskOperator).order_by(KioskOperator.id)))


def operator_list(session: Session, kiosk_id: str, sign: Callable[[bytes], bytes]) -> OperatorList:
    """The signed list of the active operators of ``kiosk_id``."""
    rows = list_kiosk_operators(session)
    version = max((r.version for r in rows), default=0)
    mine = [
        OperatorEntry(id=r.id, role=r.role, salt=r.salt, hash=r.pin_hash)  # type: ignore[arg-type]
        for r in rows
        if r.active and (r.kiosks == "*" or kiosk_id in r.kiosks.split(","))
    ]
    lst = OperatorList(
        kiosk_id=kiosk_id, version=version, issued_at=int(time.time()), operators=mine
    )
    return lst.signed(sign)


# ---------------------------------------------------------------------------------- intake
@dataclass(frozen=True)
class Opened:
    """An envelope opened and authenticated: who sent which packet, in which send."""

    kiosk: KioskKey
    packet: EnrolmentPacket
    send_id: uuid.UUID
    sent_at: datetime


def _errors(exc: ValidationError) -> list[dict[str, object]]:
    return [
        {
            "loc": [str(x) for x in e.get("loc", ()) if x != "packet"],
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors()
    ]


def open_packet(
    body: bytes,
    packet_key: X25519PrivateKey,
    kiosks: KioskDirectory,
    replay_window: timedelta,
    sender: str | None = None,
    now: datetime | None = None,
) -> Opened:
    """Decrypt an envelope, check the kiosk's signature (and that it is the ``sender`` named
    in the request's header), validate the packet and its send time. No database access.

    Raises UndecryptablePacket, NotAuthenticated, KioskDeactivated, InvalidPacket, ClockSkew.
    """
    kiosk, send, sent_at = open_envelope(
        body, packet_key, kiosks, replay_window, SendEnvelope, sender, now
    )
    return Opened(kiosk, send.packet, send.send_id, sent_at)


def open_reveal(
    body: bytes,
    packet_key: X25519PrivateKey,
    kiosks: KioskDirectory,
    replay_window: timedelta,
    sender: str | None = None,
) -> tuple[KioskKey, RevealRequest, uuid.UUID, datetime]:
    """As :func:`open_packet`, for a sealed reveal request: (kiosk, request, send id, sent)."""
    kiosk, send, sent_at = open_envelope(
        body, packet_key, kiosks, replay_window, RevealEnvelope, sender
    )
    return kiosk, send.packet, send.send_id, sent_at


def open_query(
    body: bytes,
    packet_key: X25519PrivateKey,
    kiosks: KioskDirectory,
    replay_window: timedelta,
    sender: str | None = None,
) -> tuple[KioskKey, WitnessQuery | ReceiptQuery, uuid.UUID, datetime]:
    """As :func:`open_packet`, for a sealed query: (kiosk, query, send id, sent)."""
    kiosk, send, sent_at = open_envelope(
        body, packet_key, kiosks, replay_window, QueryEnvelope, sender
    )
    return kiosk, send.packet, send.send_id, sent_at


RECEIPT_TRIES_PER_DAY = 5  # wrong dates of birth for one receipt number before it is refused


def answer_query(
    session: Session,
    cipher: FieldCipher,
    kiosk_id: str,
    query: WitnessQuery | ReceiptQuery,
    sign: Callable[[bytes], bytes],
    settings: Settings,
    audit_key: bytes,
) -> QueryAnswer:
    """Answer a kiosk's question, audited (identifiers only as keyed fingerprints).

    Witnesses: whether the pair is registered (as the intake checks it, under the same
    per-kiosk limit of failed checks). A receipt: its enrolment's state if the date of birth
    is the person's, with the IDCS's last four digits once issued; ``not_found`` whether the
    number or the date is wrong; ``refused`` after ``RECEIPT_TRIES_PER_DAY`` wrong tries on
    one number (a date of birth cannot be guessed by trying them all). RateLimited past the
    settings' failed witness checks or receipt look-ups per kiosk and hour."""
    actor = f"kiosk:{kiosk_id}"
    answer = QueryAnswer(
        query_id=query.query_id,
        kiosk_id=kiosk_id,
        kind=query.kind,
        outcome="not_found",
        signed_at=int(time.time()),
    )
    if isinstance(query, WitnessQuery):
        try:
            _witnesses(
                session, kiosk_id, query.witnesses, settings.witness_failures_per_hour, audit_key
            )
        except WitnessesNotRegistered as exc:
            witness_check_failed(session, kiosk_id, exc.reasons)
            return answer.model_copy(update={"outcome": "not_registered"}).signed(sign)
        record(session, actor, "witness.checked", "kiosk", kiosk_id, operator=query.operator_id)
        return answer.model_copy(update={"outcome": "registered"}).signed(sign)
    now = datetime.now(UTC)
    if count_recent(session, actor, "receipt.lookup_failed", now - timedelta(hours=1)) >= (
        settings.receipt_failures_per_hour
    ):
        raise RateLimited("too many failed receipt look-ups from this kiosk", retry_after=3600)
    ref = fingerprint(audit_key, query.receipt_number)
    wrong = (
        session.scalar(
            select(func.count()).where(
                AuditEvent.entity == "receipt",
                AuditEvent.entity_id == ref,
                AuditEvent.action == "receipt.lookup_failed",
                AuditEvent.at >= now - timedelta(days=1),
            )
        )
        or 0
    )
    if wrong >= RECEIPT_TRIES_PER_DAY:
        record(session, actor, "receipt.lookup_refused", "receipt", ref)
        return answer.model_copy(update={"outcome": "refused"}).signed(sign)
    found = None
    for e in session.scalars(
        select(Enrolment).where(Enrolment.receipt_number == query.receipt_number)
    ):
        demo = json.loads(
            cipher.decrypt(e.demographics, ctx(e.kiosk_id, e.packet_id, "demographics"))
        )
        if demo.get("date_of_birth") == query.date_of_birth.isoformat():
            found = e
            break
    if found is None:
        record(session, actor, "receipt.lookup_failed", "receipt", ref)
        return answer.signed(sign)
    record(session, actor, "receipt.lookup", "enrolment", found.id)
    last4 = None
    if found.status == EnrolmentState.ISSUED and found.person_id is not None:
        person = session.get(Person, found.person_id)
        last4 = person.idcs[-4:] if person is not None and person.idcs else None
    return answer.model_copy(
        update={"outcome": "found", "status": EnrolmentState(found.status), "idcs_last4": last4}
    ).signed(sign)


def open_envelope(
    body: bytes,
    packet_key: X25519PrivateKey,
    kiosks: KioskDirectory,
    replay_window: timedelta,
    model: type[_E],
    sender: str | None = None,
    now: datetime | None = None,
) -> tuple[KioskKey, _E, datetime]:
    """Decrypt a sealed request of any kind (``model``: its envelope class), check the
    kiosk's signature, that the kiosk named inside is the sender, and the send time: (kiosk,
    envelope, sent). Raises as :func:`open_packet`."""
    try:
        opened = open_sealed(body, packet_key)
    except SealError as exc:
        raise UndecryptablePacket(str(exc)) from exc
    if sender is not None and opened.kiosk_id != sender:
        raise NotAuthenticated()
    kiosk = kiosks.authenticate(opened.kiosk_id, opened.message, opened.signature)
    with refused_for(kiosk.id):
        try:
            send = model.model_validate_json(opened.message)
        except ValidationError as exc:
            raise InvalidPacket(_errors(exc)) from exc
        if send.packet.kiosk_id != kiosk.id:
            raise InvalidPacket(
                [{"loc": ["kiosk_id"], "msg": "must be the sending kiosk", "type": "wrong_kiosk"}]
            )
        now = now or datetime.now(UTC)
        sent_at = datetime.fromtimestamp(send.sent_at, UTC)
        if abs(now - sent_at) > replay_window:
            raise ClockSkew(
                f"the packet was sealed {int((sent_at - now).total_seconds()):+d} s from the "
                f"registry's clock, outside the {int(replay_window.total_seconds())} s window: "
                "the kiosk clock is wrong (or this is an old envelope)",
                server_time=int(now.timestamp()),
            )
    return kiosk, send, sent_at


def accept_send(
    session: Session, kiosk_id: str, send_id: uuid.UUID, sent_at: datetime, window: timedelta
) -> None:
    """Record a send id (ReplayedPacket if it was seen before), forgetting those older than
    the replay window twice over (their ``sent_at`` would be refused anyway)."""
    if session.get(PacketSend, send_id) is not None:
        raise ReplayedPacket("this sealed packet was already received (replay)")
    now = datetime.now(UTC)
    session.execute(delete(PacketSend).where(PacketSend.sent_at < now - 2 * window))
    session.add(PacketSend(send_id=send_id, kiosk_id=kiosk_id, sent_at=sent_at))


@contextmanager
def refused_for(kiosk_id: str) -> Iterator[None]:
    """Mark the refusals raised inside as refusals of a kiosk that proved who it is (the
    intake gate throttles a kiosk whose packets keep being refused)."""
    try:
        yield
    except RegistryError as exc:
        exc.sender = kiosk_id
        raise


def packet_digest(packet: EnrolmentPacket) -> str:
    """SHA-256 of the packet's canonical JSON: equal digests mean the same packet content."""
    return hashlib.sha256(packet.model_dump_json().encode()).hexdigest()


def ctx(kiosk_id: str, packet_id: uuid.UUID, field: str) -> str:
    """Encryption context binding a stored value to its enrolment (kiosk and packet id, unique
    together) and column."""
    return f"enrolment:{kiosk_id}:{packet_id}:{field}"


def _witnesses(
    session: Session, kiosk_id: str, witnesses: list[str], per_hour: int, audit_key: bytes
) -> None:
    """Both witnesses must be registered persons. A kiosk learns only whether the *pair* is
    (never which one is not), every check is audited, and failed checks are limited per
    kiosk and hour, so a kiosk cannot probe which IDCS exist."""
    since = datetime.now(UTC) - timedelta(hours=1)
    if count_recent(session, f"kiosk:{kiosk_id}", "witness.check_failed", since) >= per_hour:
        raise RateLimited("too many failed witness checks from this kiosk", retry_after=3600)
    found = session.scalar(
        select(func.count()).select_from(Person).where(Person.idcs.in_(witnesses))
    )
    if found != len(set(witnesses)):
        raise WitnessesNotRegistered(
            "the two witnesses are not both registered persons",
            reasons=[fingerprint(audit_key, w) for w in witnesses],
        )


def witness_check_failed(session: Session, kiosk_id: str, refs: list[str]) -> None:
    """Audit a failed witness check (in its own transaction: the packet's rolls back)."""
    record(session, f"kiosk:{kiosk_id}", "witness.check_failed", "kiosk", kiosk_id, refs=refs)


def still_active(session: Session, key: KioskKey) -> Kiosk:
    """The kiosk row, if it is still active with ``key`` (the directory may be seconds old);
    KioskDeactivated if it was revoked, NotAuthenticated if it was re-keyed."""
    kiosk = session.get(Kiosk, key.id)
    if kiosk is None or kiosk.public_key != key.public_key:
        raise NotAuthenticated()
    if not kiosk.active:
        raise KioskDeactivated(f"kiosk {key.id} has been deactivated")
    return kiosk


def find(session: Session, kiosk_id: str, packet_id: uuid.UUID) -> Enrolment | None:
    """The enrolment ``kiosk_id`` sent under ``packet_id``, if any."""
    return session.scalar(
        select(Enrolment).where(Enrolment.kiosk_id == kiosk_id, Enrolment.packet_id == packet_id)
    )


def store(
    session: Session,
    cipher: FieldCipher,
    opened: Opened,
    hold: list[str],
    replay_window: timedelta,
    witness_failures_per_hour: int,
    audit_key: bytes,
) -> tuple[Enrolment, bool]:
    """Store an opened packet (or find it again): returns the enrolment and whether it is new.

    ``hold``: intake-policy reasons to keep it from automatic issuance. Raises
    KioskDeactivated, ReplayedPacket, PacketConflict, WitnessesNotRegistered, RateLimited;
    nothing is stored in those cases.
    """
    kiosk = still_active(session, opened.kiosk)
    accept_send(session, kiosk.id, opened.send_id, opened.sent_at, replay_window)
    packet = opened.packet
    digest = packet_digest(packet)
    existing = find(session, kiosk.id, packet.packet_id)
    if existing is not None:
        if existing.packet_sha256 != digest:
            raise PacketConflict(
                f"packet {packet.packet_id} was already received with different content"
            )
        return existing, False
    witnesses = packet.capture.witnesses if packet.capture is not None else []
    if witnesses:
        _witnesses(session, kiosk.id, witnesses, witness_failures_per_hour, audit_key)
    pid = packet.packet_id

    def encrypt(value: bytes, field: str) -> bytes:
        return cipher.encrypt(value, ctx(kiosk.id, pid, field))

    fingers = [f.model_dump(mode="json") for f in packet.fingerprints]
    enrolment = Enrolment(
        packet_id=pid,
        receipt_number=receipt_number(pid),
        kiosk_id=kiosk.id,
        packet_sha256=digest,
        captured_at=packet.captured_at,
        status=EnrolmentState.RECEIVED,
        demographics=encrypt(packet.demographics.model_dump_json().encode(), "demographics"),
        face_image=encrypt(packet.face_image, "face_image"),
        face_templates=encrypt(
            face.template_to_bytes(np.asarray(packet.face_templates)), "face_templates"
        ),
        fingerprints=encrypt(json.dumps(fingers).encode(), "fingerprints"),
        capture=None
        if packet.capture is None
        else encrypt(packet.capture.model_dump_json().encode(), "capture"),
        policy_hold=",".join(hold)[:200] or None,
    )
    session.add(enrolment)
    session.flush()
    actor = f"kiosk:{kiosk.id}"
    record(session, actor, "enrolment.received", "enrolment", enrolment.id, packet=str(pid))
    if witnesses:
        refs = [fingerprint(audit_key, w) for w in witnesses]
        record(session, actor, "witness.checked", "enrolment", enrolment.id, refs=refs)
    if hold:
        record(session, actor, "enrolment.held", "enrolment", enrolment.id, reasons=hold)
    return enrolment, True


def face_templates(cipher: FieldCipher, enrolment: Enrolment) -> np.ndarray:
    """Decrypt an enrolment's face templates as an (n, 128) float32 array."""
    raw = cipher.decrypt(
        enrolment.face_templates, ctx(enrolment.kiosk_id, enrolment.packet_id, "face_templates")
    )
    return face.template_from_bytes(raw)


def finger_templates(cipher: FieldCipher, enrolment: Enrolment) -> dict[int, FingerprintTemplate]:
    """Decrypt an enrolment's finger templates, by ISO finger position (the packet's, which
    the template's own position field is set to). Raises DecryptionError, or
    TemplateFormatError for a record that cannot be parsed (intake checked them)."""
    out = {}
    for finger in _finger_records(cipher, enrolment):
        template = FingerprintTemplate.from_iso19794_2(finger.data)
        out[int(finger.position)] = dataclasses.replace(template, position=int(finger.position))
    return out


def finger_images(cipher: FieldCipher, enrolment: Enrolment) -> dict[int, bytes]:
    """Decrypt an enrolment's finger images (ISO/IEC 19794-4 records), by position; fingers
    sent without an image are left out. Raises DecryptionError."""
    return {
        int(r.position): r.image for r in _finger_records(cipher, enrolment) if r.image is not None
    }


def _finger_records(cipher: FieldCipher, enrolment: Enrolment) -> list[FingerprintRecord]:
    raw = cipher.decrypt(
        enrolment.fingerprints, ctx(enrolment.kiosk_id, enrolment.packet_id, "fingerprints")
    )
    return [FingerprintRecord.model_validate(item) for item in json.loads(raw)]


def status_of(
    session: Session, enrolment: Enrolment, sign: Callable[[bytes], bytes]
) -> EnrolmentStatus:
    """The public status of an enrolment (the IDCS only once issued), signed."""
    idcs = None
    if enrolment.status == EnrolmentState.ISSUED and enrolment.person_id is not None:
        idcs = session.scalar(select(Person.idcs).where(Person.id == enrolment.person_id))
    status = EnrolmentState(enrolment.status)
    st = EnrolmentStatus(
        packet_id=enrolment.packet_id,
        kiosk_id=enrolment.kiosk_id,
        receipt_number=enrolment.receipt_number,
        status=status,
        idcs=idcs,
        reason=enrolment.reason if status == EnrolmentState.REJECTED else None,
        message=MESSAGES[status],
        received_at=enrolment.received_at,
        updated_at=enrolment.updated_at,
        signed_at=int(time.time()),
    )
    return sign_status(st, sign)
