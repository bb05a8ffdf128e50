"""Settings of the central registry, read from ``CENTRAL_*`` environment variables."""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from central_api.exceptions import InternalError
from central_api.identity.idcs import IdcsPolicy

if TYPE_CHECKING:
    from central_api.operators.oidc import Provider


class ConfigError(InternalError):
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
    signing_key: SecretStr | None = Field(
        default=None,
        description="base64 of the registry's raw 32-byte Ed25519 private key: it signs every "
        "decision returned to kiosks and the audit checkpoints",
    )
    signing_key_file: Path | None = Field(
        default=None, description="file holding the base64 signing key (instead of signing_key)"
    )
    replay_window_seconds: int = Field(
        default=600, ge=30, description="how far a packet's sent_at may be from the server clock"
    )

    # Intake guards: what an unauthenticated or misbehaving sender can cost
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_concurrent_bodies: int = Field(
        default=16, ge=1, description="request bodies received at once; more get 503 busy"
    )
    body_idle_seconds: float = Field(
        default=10.0, gt=0, description="longest pause between two parts of a body (408)"
    )
    body_total_seconds: float = Field(default=60.0, gt=0, description="longest body upload")
    max_queue_depth: int = Field(
        default=5000, ge=1, description="enrolments awaiting a decision; more get 503 overloaded"
    )
    refusals_per_minute: int = Field(
        default=30,
        ge=1,
        description="refused packets a kiosk may send per minute; then 429 for a minute",
    )
    refusal_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        description="how long an unknown, unauthenticated or throttled sender waits for its "
        "refusal (a tarpit: no CPU spent)",
    )
    witness_failures_per_hour: int = Field(
        default=5, ge=1, description="failed witness checks a kiosk may make per hour (429)"
    )
    receipt_failures_per_hour: int = Field(
        default=30,
        ge=1,
        description="failed receipt look-ups a kiosk may make per hour (429); one receipt "
        "number answers 'refused' after 5 wrong dates of birth a day",
    )
    rsu_model: str | None = Field(
        default=None,
        description="the RSU scoring model in force for declarations and partner data: a "
        "bundled version or a model .json file (default: the bundled pmt-illustrative-2026.1, "
        "ILLUSTRATIVE, NOT THE OFFICIAL MODEL)",
    )
    rsu_thresholds_file: str | None = Field(
        default=None,
        description="the programmes' threshold file in force (JSON: versions with effective "
        "dates); default: the bundled one. rsu-rescore uses it too unless given --thresholds",
    )
    rsu_failures_per_hour: int = Field(
        default=20,
        ge=1,
        description="failed face checks of citizens opening their household at a kiosk, per "
        "kiosk and hour (429); one person answers 'refused' after 3 a day",
    )

    # Intake policy: the capture evidence a packet must carry (see README, security)
    intake_require_capture: bool = True
    intake_on_violation: Literal["refuse", "adjudicate"] = Field(
        default="refuse",
        description="refuse: 422 capture_policy; adjudicate: store it, never issue without a "
        "person's decision",
    )
    intake_chip_authenticity: Literal["off", "either", "chip", "active"] = Field(
        default="off",
        description="clone detection a chip enrolment must show: off; either (Chip or Active "
        "Authentication passed); chip (Chip Authentication); active (Active Authentication). "
        "A failed Active Authentication is a shortfall whatever this says",
    )
    intake_min_face_quality: int = Field(default=50, ge=0, le=100)
    intake_min_finger_quality: int = Field(
        default=20,
        ge=0,
        le=100,
        description="NIST NFIQ 2 of every finger the packet carries (the kiosk asks for a new "
        "capture below its reader's min_quality, 30-40; this only catches a kiosk that did not)",
    )
    intake_min_face_document_similarity: float = Field(
        default=0.90,
        ge=-1,
        le=1,
        description="1:1 live face vs chip photo unless a supervisor overrode (about FMR 1e-2 "
        "under the kiosk's impostor model)",
    )
    face_template_agreement: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="the kiosk's face template against the registry's own from the token "
        "image: same image >= 0.973, another person's <= 0.911 on the shared photos",
    )
    extraction_processes: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="processes that make the registry's templates from the packets' images "
        "(and check the kiosk's face templates against them), side by side",
    )

    # The dedup's thresholds follow from these rates at the gallery's size (fusion.Thresholds:
    # fused LLR >= ln(persons / rate)); not hand-set scores
    dedup_target_fpir: float = Field(
        default=1e-3,
        gt=0,
        lt=1,
        description="false-positive identification rate allowed to automatic DUPLICATE "
        "decisions (MOSIP ABIS's targetFPIR); the fused threshold rises with the gallery",
    )
    dedup_adjudication_fpir: float = Field(
        default=1e-2,
        gt=0,
        lt=1,
        description="the most non-mated searches that may go to an adjudicator; between "
        "this and dedup_target_fpir a match is adjudicated, not decided",
    )
    dedup_candidates: int = Field(
        default=10, ge=1, description="persons each gallery proposes for full comparison"
    )
    dedup_compare_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="threads that compare a decision's candidates in full, side by side",
    )

    idcs_check_digit: bool = True
    idcs_deny_list: Annotated[list[str], NoDecode] = Field(default_factory=list)
    idcs_sequence_limit: int = Field(default=3, ge=2)
    idcs_repeating_limit: int = Field(default=1, ge=1)
    idcs_repeating_block_limit: int = Field(default=3, ge=2)
    idcs_even_digits_limit: int = Field(default=4, ge=2)

    expose_docs: bool = Field(
        default=False, description="serve /docs and /openapi.json (never in production)"
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token of /v1/metrics; unset: no metrics endpoint"
    )
    metrics_token_file: Path | None = None
    audit_checkpoint_seconds: float = Field(
        default=300.0, gt=0, description="how often the server signs an audit checkpoint"
    )

    # The operators' console (central_api/console): sign-in sessions
    console_idle_minutes: float = Field(
        default=15.0, gt=0, description="a console session ends after this long unused"
    )
    console_session_hours: float = Field(
        default=10.0, gt=0, description="a console session ends this long after sign-in"
    )
    console_cookie_secure: bool = Field(
        default=True,
        description="mark the console's cookies Secure (served over HTTPS; browsers also "
        "accept them from http://localhost and 127.0.0.1)",
    )

    console_oidc_issuer: str | None = Field(
        default=None,
        description="the ministry's OpenID Connect provider (issuer URL); unset: passwords "
        "and TOTP only",
    )
    console_oidc_client_id: str | None = None
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_redirect_uri: str | None = Field(
        default=None,
        description="this registry's /console/oidc/callback as registered at the provider",
    )
    console_oidc_require_second_factor: bool = Field(
        default=True, description="refuse ID tokens whose amr names no second factor"
    )

    sync_wait_seconds: float = Field(default=10.0, ge=0)
    worker_poll_seconds: float = Field(default=0.5, gt=0)
    processing_lease_seconds: float = Field(default=120.0, gt=0)
    start_worker: bool = True

    # The MOSIP ABIS (central_api/abis): its own references, searched by the same engine
    abis_engine: Literal["local", "ray"] = Field(
        default="local",
        description="local: the galleries in the serving process (one worker); ray: sharded "
        "across Ray actors, shared by every ABIS worker process",
    )
    abis_shards: int = Field(default=1, ge=1, description="gallery shards (Ray actors)")
    abis_ray_address: str | None = Field(
        default=None, description="a Ray cluster's address (None: start or join a local one)"
    )
    abis_token: SecretStr | None = Field(
        default=None, description="bearer token of the ABIS's HTTP door; unset: no HTTP door"
    )
    abis_worker: bool = Field(
        default=True, description="the serving process also works the ABIS job queue"
    )
    abis_max_results: int = Field(
        default=30, ge=1, description="candidates an identify returns (MOSIP's default)"
    )
    abis_lease_seconds: float = Field(
        default=300.0, gt=0, description="how long a claimed ABIS job is held (fetch, extract)"
    )
    abis_http_wait_seconds: float = Field(default=30.0, ge=0)
    abis_fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    abis_partner_key_file: Path | None = Field(
        default=None,
        description="PEM private key of the ABIS partner: datashares are encrypted to it "
        "(unset: MOSIP's share encryption is off)",
    )
    abis_broker: str = Field(default="127.0.0.1:61613", description="ActiveMQ STOMP host:port")
    abis_broker_user: str | None = None
    abis_broker_password: SecretStr | None = None
    abis_inbound_queue: str = "mosip-to-abis"
    abis_outbound_queue: str = "abis-to-mosip"

    @field_validator("idcs_deny_list", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        if self.dedup_adjudication_fpir < self.dedup_target_fpir:
            raise ValueError("dedup_adjudication_fpir must not be below dedup_target_fpir")
        return self

    def oidc_provider(self) -> Provider | None:
        """The console's OpenID Connect provider, or None when sign-in is local only;
        ConfigError when it is half configured."""
        from central_api.operators.oidc import Provider

        given = (
            self.console_oidc_issuer,
            self.console_oidc_client_id,
            self.console_oidc_client_secret,
            self.console_oidc_redirect_uri,
        )
        if not any(given):
            return None
        if not all(given):
            raise ConfigError(
                "OpenID Connect needs CENTRAL_CONSOLE_OIDC_ISSUER, _CLIENT_ID, _CLIENT_SECRET "
                "and _REDIRECT_URI together"
            )
        assert self.console_oidc_client_secret is not None
        return Provider(
            issuer=str(self.console_oidc_issuer),
            client_id=str(self.console_oidc_client_id),
            client_secret=self.console_oidc_client_secret.get_secret_value(),
            redirect_uri=str(self.console_oidc_redirect_uri),
            require_second_factor=self.console_oidc_require_second_factor,
        )

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

    def signing_private_key(self) -> Ed25519PrivateKey:
        """The registry's Ed25519 key that signs decisions and audit checkpoints."""
        raw = _key32(
            self.signing_key, self.signing_key_file, "SIGNING_KEY", "signing key", "signing-keygen"
        )
        return Ed25519PrivateKey.from_private_bytes(raw)

    def metrics_bearer(self) -> str | None:
        """The metrics endpoint's token, if one is configured."""
        if self.metrics_token is not None:
            return self.metrics_token.get_secret_value() or None
        if self.metrics_token_file is not None:
            return read_secret_file(self.metrics_token_file, "CENTRAL_METRICS_TOKEN_FILE")
        return None


def read_secret_file(path: Path, what: str) -> str:
    """The stripped text of a key file, refused when group or others may read it."""
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise ConfigError(
                f"{what} {path} is readable by group or others (mode {mode & 0o777:o}); "
                f"run: chmod 600 {path}"
            )
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc}") from exc


def _key32(value: SecretStr | None, file: Path | None, env: str, what: str, cmd: str) -> bytes:
    raw: str | None = None
    if value is not None:
        raw = value.get_secret_value()
    elif file is not None:
        raw = read_secret_file(file, f"CENTRAL_{env}_FILE")
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
