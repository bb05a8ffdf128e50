"""Console accounts: argon2id passwords, TOTP second factor (RFC 6238), lockout, sessions.

Sign-in takes the account, the password and a current TOTP code together and answers one
``SignInFailed`` for any mistake (nobody learns which part was wrong). Five failures in a row
lock the account for fifteen minutes. A session is a random token in an HttpOnly cookie; the
database keeps only its SHA-256, with a CSRF token and when it was last used: it ends after
``console_idle_minutes`` without a request, ``console_session_hours`` after sign-in, at sign-out,
and when the account is disabled or reset.

OpenID Connect (a ministry's own identity provider) fits beside this: ``Operator.oidc_subject``
links an account to the provider's ``sub``; the provider's sign-in replaces the password and the
TOTP (the provider enforces its own second factor, which ``acr``/``amr`` must show); roles stay
here. Not implemented yet (docs/architecture.md, "Console").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central_api.audit.service import record
from central_api.crypto import FieldCipher
from central_api.db import utcnow
from central_api.exceptions import InvalidRequest
from central_api.operators.exceptions import NotSignedIn
from central_api.operators.models import ConsoleSession, Operator


class Role(StrEnum):
    """What an operator may do in the console (one role per account)."""

    ADJUDICATOR = "adjudicator"  # decides adjudication cases; looks persons up with a reason
    SENIOR_ADJUDICATOR = "senior_adjudicator"  # the same, and the second eye of four
    REGISTRAR_ADMIN = "registrar_admin"  # kiosks and operators
    AUDITOR = "auditor"  # the audit trail, fraud flags and reports: read only
    RSU_AGENT = "rsu_agent"  # the social registry (RSU): households, decisions, appeals


ADJUDICATORS = frozenset({Role.ADJUDICATOR, Role.SENIOR_ADJUDICATOR})
RSU_ROLES = frozenset({Role.RSU_AGENT})  # roles that open the RSU's pages and API

MAX_FAILURES = 5
LOCK_MINUTES = 15
TOTP_STEP = 30  # seconds (RFC 6238's default, what authenticator apps expect)
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps either side of now accepted: clocks drift, people type slowly
_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]{1,39}$")
_MIN_PASSWORD = 12
# OWASP's argon2id setting (19 MiB, 2 passes): ~50 ms here, a guess costs an attacker as much
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def _totp_secret_context(operator_id: str) -> str:
    return f"operator_totp:{operator_id}"


# ------------------------------------------------------------------------------ TOTP
def totp(secret: bytes, at: float | None = None, step_offset: int = 0) -> str:
    """The RFC 6238 code (HMAC-SHA1, 30 s, 6 digits) of ``secret`` at unix time ``at``."""
    step = int((time.time() if at is None else at) // TOTP_STEP) + step_offset
    return _hotp(secret, step)


def _hotp(secret: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226: dynamic truncation of HMAC-SHA1(secret, counter)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return str(code).zfill(digits)


def secret_base32(secret: bytes) -> str:
    """The secret as authenticator apps take it (RFC 4648 base32, no padding)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def secret_from_base32(text: str) -> bytes:
    """The secret of a base32 string (spaces and case ignored); ValueError if it is not one."""
    clean = text.replace(" ", "").upper()
    return base64.b32decode(clean + "=" * (-len(clean) % 8))


def provisioning_uri(operator_id: str, secret: bytes, issuer: str = "RNP console") -> str:
    """The ``otpauth://`` URI an authenticator app scans (as a QR code) to add the account."""
    label = quote(f"{issuer}:{operator_id}")
    return (
        f"otpauth://totp/{label}?secret={secret_base32(secret)}"
        f"&issuer={quote(issuer)}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}"
    )


def _totp_step(secret: bytes, code: str, last_step: int, at: float) -> int | None:
    """The step ``code`` belongs to (within the window, after ``last_step``), or None."""
    if not (code.isdigit() and len(code) == TOTP_DIGITS):
        return None
    now = int(at // TOTP_STEP)
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
        if step > last_step and hmac.compare_digest(_hotp(secret, step), code):
            return step
    return None


# -------------------------------------------------------------------------- accounts
@dataclass(frozen=True)
class NewCredentials:
    """What an administrator hands a new (or reset) operator, once: never stored in clear."""

    operator_id: str
    password: str
    totp_secret: bytes

    @property
    def totp_base32(self) -> str:
        """The TOTP secret for an authenticator app."""
        return secret_base32(self.totp_secret)

    @property
    def uri(self) -> str:
        """The ``otpauth://`` URI (for a QR code)."""
        return provisioning_uri(self.operator_id, self.totp_secret)


def _new_password() -> str:
    # 4 groups of 5 from an alphabet without look-alikes: ~100 bits, readable aloud
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


def check_password_rules(password: str) -> None:
    """InvalidRequest unless ``password`` is long enough to stand an offline guess."""
    if len(password) < _MIN_PASSWORD:
        raise InvalidRequest(f"a password has at least {_MIN_PASSWORD} characters")


def add_operator(
    s: Session,
    cipher: FieldCipher,
    operator_id: str,
    role: Role | str,
    actor: str,
    password: str | None = None,
) -> NewCredentials:
    """Create an account with a new TOTP secret (and a generated password unless one is
    given); the operator must change the password at first sign-in. InvalidRequest for a bad
    id, an unknown role or an id already taken."""
    if not _ID.match(operator_id):
        raise InvalidRequest("an operator id is 2-40 lower-case letters, digits, '.', '_' or '-'")
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidRequest(f"unknown role {role!r}") from exc
    if s.get(Operator, operator_id) is not None:
        raise InvalidRequest(f"operator {operator_id} exists")
    password = password or _new_password()
    check_password_rules(password)
    secret = os.urandom(20)  # 160 bits, RFC 4226's recommendation for HMAC-SHA1
    s.add(
        Operator(
            id=operator_id,
            role=role.value,
            password_hash=_HASHER.hash(password),
            totp_secret=cipher.encrypt(secret, _totp_secret_context(operator_id)),
            totp_last_step=0,
            failed_attempts=0,
            active=True,
            must_change_password=True,
        )
    )
    record(s, actor, "operator.added", "operator", operator_id, role=role.value)
    return NewCredentials(operator_id, password, secret)


def _operator(s: Session, operator_id: str) -> Operator:
    op = s.get(Operator, operator_id, with_for_update=True)
    if op is None:
        raise InvalidRequest(f"no operator {operator_id}")
    return op


def _end_sessions(s: Session, operator_id: str) -> None:
    s.execute(
        update(ConsoleSession)
        .where(ConsoleSession.operator_id == operator_id, ConsoleSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def disable_operator(s: Session, operator_id: str, actor: str, reason: str) -> None:
    """Disable an account and end its sessions at once."""
    op = _operator(s, operator_id)
    op.active = False
    _end_sessions(s, operator_id)
    record(s, actor, "operator.disabled", "operator", operator_id, reason=reason[:200])


def reset_operator(s: Session, cipher: FieldCipher, operator_id: str, actor: str) -> NewCredentials:
    """A lost phone or password: new password and TOTP secret, lockout lifted, account
    enabled, sessions ended; the operator changes the password at the next sign-in."""
    op = _operator(s, operator_id)
    password, secret = _new_password(), os.urandom(20)
    op.password_hash = _HASHER.hash(password)
    op.totp_secret = cipher.encrypt(secret, _totp_secret_context(operator_id))
    op.totp_last_step = 0
    op.failed_attempts, op.locked_until = 0, None
    op.active, op.must_change_password = True, True
    _end_sessions(s, operator_id)
    record(s, actor, "operator.reset", "operator", operator_id)
    return NewCredentials(operator_id, password, secret)


def change_password(s: Session, operator_id: str, old: str, new: str) -> None:
    """The signed-in operator's own change (the old password proves it is them)."""
    op = _operator(s, operator_id)
    try:
        _HASHER.verify(op.password_hash, old)
    except (VerificationError, InvalidHashError) as exc:
        raise InvalidRequest("the current password is wrong") from exc
    check_password_rules(new)
    if new == old:
        raise InvalidRequest("the new password must differ from the current one")
    op.password_hash = _HASHER.hash(new)
    op.must_change_password = False
    record(s, operator_id, "operator.password_changed", "operator", operator_id)


def link_oidc(s: Session, operator_id: str, subject: str | None, actor: str) -> None:
    """Let the identity provider's ``subject`` sign in as this account (None: unlink). A
    linked operator signs in at the provider; their password here is not theirs to change."""
    op = _operator(s, operator_id)
    if subject is not None:
        taken = s.scalar(select(Operator.id).where(Operator.oidc_subject == subject))
        if taken not in (None, operator_id):
            raise InvalidRequest(f"that subject is linked to {taken}")
    op.oidc_subject = subject
    op.must_change_password = False if subject else op.must_change_password
    record(s, actor, "operator.oidc_linked", "operator", operator_id, linked=subject is not None)


def sign_in_oidc(s: Session, subject: str) -> Operator | None:
    """The active account linked to the provider's ``subject`` (None: none; audited)."""
    op = s.scalar(select(Operator).where(Operator.oidc_subject == subject))
    now = utcnow()
    if op is None or not op.active or (op.locked_until is not None and op.locked_until > now):
        if op is not None:
            record(s, op.id, "operator.sign_in_failed", "operator", op.id, method="oidc")
        return None
    record(s, op.id, "operator.signed_in", "operator", op.id, method="oidc")
    return op


def list_operators(s: Session) -> list[Operator]:
    """Every account, by id."""
    return list(s.scalars(select(Operator).order_by(Operator.id)))


def totp_secret(s: Session, cipher: FieldCipher, operator_id: str) -> bytes:
    """An operator's TOTP secret (for ``central-api operator-code`` in a demo or a test)."""
    op = _operator(s, operator_id)
    return cipher.decrypt(op.totp_secret, _totp_secret_context(operator_id))


# --------------------------------------------------------------------------- sign-in
def sign_in(
    s: Session,
    cipher: FieldCipher,
    operator_id: str,
    password: str,
    code: str,
    at: float | None = None,
) -> Operator | None:
    """Check password and TOTP code together: the account, or None (the failure is counted
    and audited on ``s``: the caller commits it, then refuses with ``SignInFailed``)."""
    at = time.time() if at is None else at
    now = utcnow()
    op = s.get(Operator, operator_id.strip().lower(), with_for_update=True)
    if op is None:
        _HASHER.hash(password)  # the same time as a real check: ids are not revealed by timing
        return None
    if not op.active or (op.locked_until is not None and op.locked_until > now):
        return None
    ok: bool
    try:
        ok = _HASHER.verify(op.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    secret = cipher.decrypt(op.totp_secret, _totp_secret_context(op.id))
    step = _totp_step(secret, code.strip(), op.totp_last_step, at)
    if not ok or step is None:
        op.failed_attempts += 1
        if op.failed_attempts >= MAX_FAILURES:
            op.locked_until, op.failed_attempts = now + timedelta(minutes=LOCK_MINUTES), 0
            record(s, op.id, "operator.locked", "operator", op.id)
        record(s, op.id, "operator.sign_in_failed", "operator", op.id)
        return None
    op.totp_last_step, op.failed_attempts, op.locked_until = step, 0, None
    if _HASHER.check_needs_rehash(op.password_hash):
        op.password_hash = _HASHER.hash(password)
    record(s, op.id, "operator.signed_in", "operator", op.id, method="password")
    return op


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(s: Session, operator_id: str) -> tuple[str, str]:
    """A new session of a signed-in operator: (cookie token, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    s.add(ConsoleSession(token_hash=_hash_token(token), operator_id=operator_id, csrf=csrf))
    return token, csrf


@dataclass(frozen=True)
class Signed:
    """The operator behind a request: who, their role, the session's CSRF token and key."""

    operator_id: str
    role: Role
    csrf: str
    session_key: str  # the session's token hash: binds signed image links to this session
    must_change_password: bool


def current(s: Session, token: str | None, idle: timedelta, absolute: timedelta) -> Signed:
    """The session of ``token`` if it is still valid (and marks it used now); NotSignedIn."""
    if not token:
        raise NotSignedIn("sign in")
    now = utcnow()
    row = s.get(ConsoleSession, _hash_token(token), with_for_update=True)
    if row is None or row.ended_at is not None:
        raise NotSignedIn("sign in")
    if now - row.last_seen_at > idle or now - row.started_at > absolute:
        row.ended_at = now
        raise NotSignedIn("your session ended; sign in again")
    op = s.get(Operator, row.operator_id)
    if op is None or not op.active:
        row.ended_at = now
        raise NotSignedIn("sign in")
    row.last_seen_at = now
    return Signed(op.id, Role(op.role), row.csrf, row.token_hash, op.must_change_password)


def close_session(s: Session, token: str | None) -> None:
    """Sign out (nothing happens for an unknown token)."""
    if token:
        row = s.get(ConsoleSession, _hash_token(token))
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
            record(s, row.operator_id, "operator.signed_out", "operator", row.operator_id)


def active_since(s: Session, since: datetime) -> int:
    """Sessions used since ``since`` (a gauge for the dashboard)."""
    return len(
        list(
            s.scalars(
                select(ConsoleSession.token_hash).where(
                    ConsoleSession.ended_at.is_(None), ConsoleSession.last_seen_at >= since
                )
            )
        )
    )
