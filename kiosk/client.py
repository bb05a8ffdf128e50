"""Building, signing and submitting enrolment packets to the central registry."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central_api.enrolment.schemas import (
    KIOSK_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CaptureInfo,
    Demographics,
    EnrolmentPacket,
    EnrolmentStatus,
    FingerprintTemplate,
    read_message,
    seal,
)


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
        """Load the PEM private key at ``path``."""
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(kiosk_id, key)

    def save(self, path: Path) -> None:
        """Write the private key as PEM, readable by the owner only."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(pem)

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
    fingerprints: list[FingerprintTemplate] | None = None,
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


class PacketRefused(RuntimeError):
    """The registry refused the packet (4xx): resending it unchanged will not help."""

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(f"registry refused the packet ({status_code}): {detail}")
        self.status_code, self.detail = status_code, detail


class CentralClient:
    """HTTP client of the registry. Submission is idempotent, so it retries freely."""

    def __init__(
        self,
        base_url: str,
        identity: KioskIdentity,
        registry_key: bytes,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        if len(registry_key) != 32:
            raise ValueError("the registry's packet key must be a raw 32-byte X25519 public key")
        self.identity, self.registry_key = identity, registry_key
        self.retries, self.backoff = retries, backoff
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

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
                r = self._http.request(method, url, **kw)  # type: ignore[arg-type]
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if r.status_code < 500 and r.status_code != 429:
                    return r
                if attempt == self.retries:
                    r.raise_for_status()
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(r: httpx.Response) -> EnrolmentStatus:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise PacketRefused(r.status_code, detail)
        return EnrolmentStatus.model_validate_json(r.content)

    def submit(self, packet: EnrolmentPacket | bytes, wait: bool = True) -> EnrolmentStatus:
        """Send a packet, sealed; returns its status. Raises PacketRefused on a 4xx.

        Every attempt is a new envelope (a retried one would be refused as a replay); the
        packet inside is the same, so the registry stores it once. ``wait=False`` asks the
        registry not to wait for the identity check (``Prefer: respond-async``).
        """
        headers = {"content-type": "application/json"}
        if not wait:
            headers["prefer"] = "respond-async"
        return self._parse(
            self._request(
                "POST",
                "/v1/enrolments",
                body=lambda: self.identity.seal(packet, self.registry_key),
                headers=headers,
            )
        )

    def status(self, packet_id: uuid.UUID) -> EnrolmentStatus:
        """Current status of a submitted packet."""
        path = f"/v1/enrolments/{packet_id}"
        ts = int(time.time())
        headers = {
            KIOSK_HEADER: self.identity.kiosk_id,
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: self.identity.sign(read_message(path, ts)),
        }
        return self._parse(self._request("GET", path, headers=headers))

    def wait_final(self, packet_id: uuid.UUID, timeout: float = 60.0) -> EnrolmentStatus:
        """Poll until the decision is made (or ``timeout`` passes: then the last status)."""
        deadline = time.monotonic() + timeout
        st = self.status(packet_id)
        while not st.final and time.monotonic() < deadline:
            time.sleep(0.25)
            st = self.status(packet_id)
        return st
