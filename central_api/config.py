"""Settings of the central registry, read from ``CENTRAL_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from central_api.identity.idcs import IdcsPolicy


class ConfigError(RuntimeError):
    """The settings cannot be used as given; the message says what to change."""


class Settings(BaseSettings):
    """Every knob of the central service. Defaults suit the embedded (SQLite) mode."""

    model_config = SettingsConfigDict(env_prefix="CENTRAL_", extra="ignore")

    database_url: str = "sqlite:///var/central.db"
    data_key: SecretStr | None = Field(
        default=None, description="base64 of a 32-byte AES-256 key for data at rest"
    )
    data_key_file: Path | None = Field(
        default=None, description="file holding the base64 key (instead of data_key)"
    )
    packet_key: SecretStr | None = Field(
        default=None,
        description="base64 of the registry's raw 32-byte X25519 private key; kiosks seal "
        "packets to its public key",
    )
    packet_key_file: Path | None = Field(
        default=None, description="file holding the base64 packet key (instead of packet_key)"
    )
    replay_window_seconds: int = Field(
        default=600, ge=30, description="how far a packet's sent_at may be from the server clock"
    )

    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_face_templates: int = Field(default=4, ge=1)

    # Face dedup thresholds on cosine similarity of L2-normalised dlib descriptors.
    # Calibrated on ../shared/data/faces (72 usable photos, 12 people): genuine pairs
    # >= 0.930, impostor pairs <= 0.908. A tiny set: recalibrate on real data before use.
    face_duplicate_threshold: float = Field(default=0.93, gt=0, le=1)
    face_adjudication_threshold: float = Field(default=0.91, gt=0, le=1)
    dedup_candidates: int = Field(default=10, ge=1)

    idcs_check_digit: bool = True
    idcs_deny_list: Annotated[list[str], NoDecode] = Field(default_factory=list)
    idcs_sequence_limit: int = Field(default=3, ge=2)
    idcs_repeating_limit: int = Field(default=1, ge=1)
    idcs_repeating_block_limit: int = Field(default=3, ge=2)
    idcs_even_digits_limit: int = Field(default=4, ge=2)

    sync_wait_seconds: float = Field(default=10.0, ge=0)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    processing_lease_seconds: float = Field(default=120.0, gt=0)
    start_worker: bool = True

    @field_validator("idcs_deny_list", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        if self.face_adjudication_threshold > self.face_duplicate_threshold:
            raise ValueError("face_adjudication_threshold must not exceed face_duplicate_threshold")
        return self

    def idcs_policy(self) -> IdcsPolicy:
        """The IDCS filters these settings describe."""
        return IdcsPolicy(
            check_digit=self.idcs_check_digit,
            sequence_limit=self.idcs_sequence_limit,
            repeating_limit=self.idcs_repeating_limit,
            repeating_block_limit=self.idcs_repeating_block_limit,
            even_digits_limit=self.idcs_even_digits_limit,
            deny_list=tuple(self.idcs_deny_list),
        )

    def key_bytes(self) -> bytes:
        """Return the 32-byte data key, or raise ConfigError saying how to provide one."""
        return _key32(self.data_key, self.data_key_file, "DATA_KEY", "data key", "keygen")

    def packet_private_key(self) -> X25519PrivateKey:
        """The registry's X25519 key that kiosks seal packets to (raises ConfigError)."""
        raw = _key32(
            self.packet_key, self.packet_key_file, "PACKET_KEY", "packet key", "packet-keygen"
        )
        return X25519PrivateKey.from_private_bytes(raw)


def _key32(value: SecretStr | None, file: Path | None, env: str, what: str, cmd: str) -> bytes:
    raw: str | None = None
    if value is not None:
        raw = value.get_secret_value()
    elif file is not None:
        try:
            raw = file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read CENTRAL_{env}_FILE: {exc}") from exc
    if not raw:
        raise ConfigError(
            f"no {what}: set CENTRAL_{env} or CENTRAL_{env}_FILE (create one with "
            f"`central-api {cmd}`)"
        )
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"the {what} is not valid base64") from exc
    if len(key) != 32:
        raise ConfigError(f"the {what} must be 32 bytes, got {len(key)}")
    return key


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
