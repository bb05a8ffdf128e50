"""Building, signing and submitting enrolment packets to the central registry.

The registry is trusted only through its keys: packets are sealed to its X25519 packet key,
and every answer must carry its Ed25519 signature (checked with the public half provisioned to
the kiosk) before the kiosk forgets a packet or prints an IDCS. Plain ``http://`` is allowed
for a registry on this machine only.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central_api.enrolment.schemas import (
    KIOSK_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CaptureInfo,
    DecisionNotAuthentic,
    Demographics,
    EnrolmentPacket,
    EnrolmentStatus,
    ErrorAnswer,
    FingerprintRecord,
    OperatorList,
    QueryAnswer,
    ReceiptQuery,
    RevealAnswer,
    RevealRequest,
    WitnessQuery,
    read_message,
    seal,
    verify_status,
)
from central_api.rsu.schemas import KioskRSUAnswer, KioskRSURequest, SignedRSUAnswer
from kiosk.exceptions import KioskError


class ConfigError(KioskError, ValueError):
    """The kiosk cannot start as configured: a key file missing, malformed or readable by
    others, a registry URL without https. The message says what to change."""


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only, whatever ``path`` held before: a new file
    created 0600 beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """A secret's bytes; ConfigError when group or others may read the file."""
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}"
            )
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


@dataclass(frozen=True)
class KioskIdentity:
    """A kiosk's id and its Ed25519 signing key."""

    kiosk_id: str
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kiosk_id: str) -> KioskIdentity:
        """A new identity with a fresh key."""
        return cls(kiosk_id, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, kiosk_id: str, path: Path) -> KioskIdentity:
        """Load the PEM private key at ``path`` (refused if others may read the file)."""
        pem = read_private(path)
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError as exc:
            raise ConfigError(f"{path} does not hold a PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path} does not hold an Ed25519 private key")
        return cls(kiosk_id, key)

    def save(self, path: Path) -> None:
        """Write the private key as PEM, readable by the owner only (mode 600, even where a
        file with a looser mode was before)."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)

    def public_key_b64(self) -> str:
        """The raw public key, base64: what the registry's ``kiosk-add`` takes."""
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()

    def sign(self, body: bytes) -> str:
        """Base64 Ed25519 signature of ``body``."""
        return base64.b64encode(self.key.sign(body)).decode()

    def seal(self, packet: EnrolmentPacket | bytes, registry_key: bytes) -> bytes:
        """The packet (or its stored JSON) signed by this kiosk and encrypted to the registry:
        one fresh envelope (its own send id and time) per call, ready to POST."""
        data = packet if isinstance(packet, bytes) else packet.model_dump_json().encode()
        return seal(data, self.kiosk_id, self.key.sign, registry_key)


def build_packet(
    kiosk_id: str,
    demographics: Demographics,
    face_templates: list[np.ndarray],
    face_image: bytes,
    fingerprints: list[FingerprintRecord] | None = None,
    packet_id: uuid.UUID | None = None,
    captured_at: datetime | None = None,
    capture: CaptureInfo | None = None,
) -> EnrolmentPacket:
    """Assemble a validated packet; a fresh random packet id unless one is given."""
    return EnrolmentPacket(
        packet_id=packet_id or uuid.uuid4(),
        kiosk_id=kiosk_id,
        captured_at=captured_at or datetime.now(UTC),
        demographics=demographics,
        face_templates=[np.asarray(t, dtype=np.float32).tolist() for t in face_templates],
        face_image=face_image,
        fingerprints=fingerprints or [],
        capture=capture,
    )


class PacketRefused(KioskError):
    """The registry refused the request (4xx/503 with an error answer). ``retryable`` (from
    the answer's code, not the HTTP status) says whether sending it again can succeed."""

    def __init__(
        self,
        status_code: int,
        code: str,
        retryable: bool,
        detail: object,
        server_time: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"registry refused the packet ({status_code} {code}): {detail}")
        self.status_code, self.code, self.retryable, self.detail = (
            status_code,
            code,
            retryable,
            detail,
        )
        self.server_time, self.retry_after = server_time, retry_after


class AnswerNotAuthentic(KioskError):
    """An answer that claims to come from the registry but is not signed by its key: a wrong
    URL, a proxy or a fake server. Nothing is forgotten; the packet is sent again later."""


def _loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_registry_url(url: str) -> str:
    """``url`` if it is https, or http to this machine; ConfigError otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname)):
        return url
    raise ConfigError(f"registry URL {url!r}: https is required (plain http only to this machine)")


class CentralClient:
    """HTTP client of the registry. Submission is idempotent, so it retries freely; every
    status it returns has been verified against the registry's signing key."""

    def __init__(
        self,
        base_url: str,
        identity: KioskIdentity,
        registry_key: bytes,
        registry_signing_key: bytes,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        if len(registry_key) != 32:
            raise ValueError("the registry's packet key must be a raw 32-byte X25519 public key")
        if len(registry_signing_key) != 32:
            raise ValueError("the registry's signing key must be a raw 32-byte Ed25519 key")
        self.identity, self.registry_key = identity, registry_key
        self.registry_signing_key = registry_signing_key
        self.retries, self.backoff = retries, backoff
        self._http = httpx.Client(base_url=check_registry_url(base_url), timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> CentralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, url: str, body: Callable[[], bytes] | None = None, **kw: object
    ) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                if body is not None:
                    kw["content"] = body()
                # not typed precisely here: kw holds httpx's own keywords (headers, content), passed
                # through
                r = self._http.request(method, url, **kw)  # type: ignore[arg-type]
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if (r.status_code < 500 and r.status_code != 429) or attempt == self.retries:
                    return r
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _refused(self, r: httpx.Response) -> None:
        """Raise PacketRefused for the registry's error answer (or the HTTP error)."""
        if r.status_code >= 400:
            try:
                err = ErrorAnswer.model_validate_json(r.content)
            except ValueError:
                r.raise_for_status()  # not the registry's error format: a transport failure
                raise
            retry_after = r.headers.get("retry-after")
            raise PacketRefused(
                r.status_code,
                err.code.value,
                err.retryable,
                err.detail,
                err.server_time,
                float(retry_after) if retry_after and retry_after.isdigit() else None,
            )

    def _parse(self, r: httpx.Response, packet_id: uuid.UUID) -> EnrolmentStatus:
        self._refused(r)
        try:
            st = EnrolmentStatus.model_validate_json(r.content)
            return verify_status(st, self.registry_signing_key, self.identity.kiosk_id, packet_id)
        except (ValueError, DecisionNotAuthentic) as exc:
            raise AnswerNotAuthentic(f"the answer is not the registry's: {exc}") from exc

    def submit(self, packet: EnrolmentPacket | bytes, wait: bool = True) -> EnrolmentStatus:
        """Send a packet, sealed; returns its verified status. Raises PacketRefused, or
        AnswerNotAuthentic when the answer is not signed by the registry.

        Every attempt is a new envelope (a retried one would be refused as a replay); the
        packet inside is the same, so the registry stores it once. ``wait=False`` asks the
        registry not to wait for the identity check (``Prefer: respond-async``).
        """
        if isinstance(packet, bytes):
            packet_id = uuid.UUID(json.loads(packet)["packet_id"])
        else:
            packet_id = packet.packet_id
        headers = {"content-type": "application/json", KIOSK_HEADER: self.identity.kiosk_id}
        if not wait:
            headers["prefer"] = "respond-async"
        return self._parse(
            self._request(
                "POST",
                "/v1/enrolments",
                body=lambda: self.identity.seal(packet, self.registry_key),
                headers=headers,
            ),
            packet_id,
        )

    def _read(self, path: str) -> httpx.Response:
        """A GET signed by this kiosk (``read_message``)."""
        ts = int(time.time())
        headers = {
            KIOSK_HEADER: self.identity.kiosk_id,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: self.identity.sign(read_message(path, ts)),
        }
        return self._request("GET", path, headers=headers)

    def status(self, packet_id: uuid.UUID) -> EnrolmentStatus:
        """Current status of a submitted packet, verified."""
        return self._parse(self._read(f"/v1/enrolments/{packet_id}"), packet_id)

    def _post_sealed(self, path: str, message: bytes) -> httpx.Response:
        """POST ``message`` sealed like a packet (a new envelope per attempt); PacketRefused
        for the registry's refusal."""
        headers = {"content-type": "application/json", KIOSK_HEADER: self.identity.kiosk_id}
        r = self._request(
            "POST",
            path,
            body=lambda: self.identity.seal(message, self.registry_key),
            headers=headers,
        )
        self._refused(r)
        return r

    def reveal(self, request: RevealRequest) -> RevealAnswer:
        """Ask the registry to show a duplicate citizen their IDCS (the request sealed like a
        packet: it holds a face template); the answer verified. Raises PacketRefused (404: not
        a duplicate of this kiosk), or AnswerNotAuthentic."""
        r = self._post_sealed("/v1/kiosk/reveal", request.model_dump_json().encode())
        try:
            answer = RevealAnswer.model_validate_json(r.content)
            return answer.verify(
                self.registry_signing_key, self.identity.kiosk_id, request.packet_id
            )
        except (ValueError, DecisionNotAuthentic) as exc:
            raise AnswerNotAuthentic(f"the answer is not the registry's: {exc}") from exc

    def ask(self, query: WitnessQuery | ReceiptQuery) -> QueryAnswer:
        """Ask the registry a question between packets (sealed like a packet: it holds
        personal data); the answer verified. Raises PacketRefused (429: too many failed
        questions from this kiosk), or AnswerNotAuthentic."""
        r = self._post_sealed("/v1/kiosk/query", query.model_dump_json().encode())
        try:
            answer = QueryAnswer.model_validate_json(r.content)
            return answer.verify(self.registry_signing_key, self.identity.kiosk_id, query.query_id)
        except (ValueError, DecisionNotAuthentic) as exc:
            raise AnswerNotAuthentic(f"the answer is not the registry's: {exc}") from exc

    def rsu(self, request: KioskRSURequest) -> KioskRSUAnswer:
        """A verified citizen's request about their household (sealed like a packet: it holds a
        face template and what they declare); the answer verified. Raises PacketRefused (429:
        too many failed face checks from this kiosk), or AnswerNotAuthentic."""
        r = self._post_sealed("/v1/kiosk/rsu", request.model_dump_json().encode())
        try:
            signed = SignedRSUAnswer.model_validate_json(r.content)
            return signed.open(self.registry_signing_key, self.identity.kiosk_id, request.query_id)
        except (ValueError, DecisionNotAuthentic) as exc:
            raise AnswerNotAuthentic(f"the answer is not the registry's: {exc}") from exc

    def operators(self) -> OperatorList:
        """This kiosk's agents and supervisors, as the registry signed them (verified).
        Raises PacketRefused, or AnswerNotAuthentic."""
        r = self._read("/v1/kiosk/operators")
        self._refused(r)
        try:
            lst = OperatorList.model_validate_json(r.content)
            return lst.verify(self.registry_signing_key, self.identity.kiosk_id)
        except (ValueError, DecisionNotAuthentic) as exc:
            raise AnswerNotAuthentic(f"the operator list is not the registry's: {exc}") from exc

    def wait_final(self, packet_id: uuid.UUID, timeout: float = 60.0) -> EnrolmentStatus:
        """Poll until the machine has decided (or ``timeout`` passes: then the last status)."""
        deadline = time.monotonic() + timeout
        st = self.status(packet_id)
        while not st.decided and time.monotonic() < deadline:
            time.sleep(0.25)
            st = self.status(packet_id)
        return st
