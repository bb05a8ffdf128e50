"""Firmware configurations: one YAML per device model and firmware, validated by a schema.

They hold what technicians tune per device (capture settings, quality thresholds,
calibration targets). Files ship in the ``firmware_configs`` package; :func:`load`,
:func:`shipped` and :func:`by_model` read those.

On a kiosk, technicians change them through a :class:`FirmwareStore`: every version is kept
(immutable files), each change is logged (who, when, why, signed by whom, SHA-256 of the
file), a change must carry an Ed25519 signature by a trusted signer (or be made in
technician mode, which the log records), and a rollback is a new version with the old
content. Signatures are detached, over the exact bytes of the YAML file, and kept base64 in
``<file>.sig`` (:func:`signature_file`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import difflib
import fcntl
import functools
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, overload

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biometrics import face
from devices.exceptions import DeviceError

# A model name is a folder of the FirmwareStore: letters, digits, dot, dash, underscore.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _band(low: float, high: float, what: str) -> None:
    if low >= high:
        raise ValueError(f"{what}: the minimum must be below the maximum")


class CameraCapture(_Strict):
    """How the camera is driven."""

    width: int = Field(ge=320, le=7680)
    height: int = Field(ge=240, le=4320)
    fps: float = Field(gt=0, le=120)
    auto_capture_consecutive: int = Field(default=3, ge=1, le=30)
    timeout_seconds: float = Field(default=30, gt=0, le=300)


_T = face.DEFAULT_THRESHOLDS


class FaceQualityLimits(_Strict):
    """Face image quality thresholds; the fields of biometrics.face.QualityThresholds."""

    min_eye_distance_px: float = Field(default=_T.min_eye_distance_px, ge=20)
    max_centre_offset: float = Field(default=_T.max_centre_offset, gt=0, le=0.5)
    max_roll_degrees: float = Field(default=_T.max_roll_degrees, gt=0, le=45)
    max_yaw_degrees: float = Field(default=_T.max_yaw_degrees, gt=0, le=60)
    min_sharpness: float = Field(default=_T.min_sharpness, ge=0)
    min_brightness: float = Field(default=_T.min_brightness, ge=0, le=255)
    max_brightness: float = Field(default=_T.max_brightness, ge=0, le=255)
    max_light_asymmetry: float = Field(default=_T.max_light_asymmetry, gt=0, le=1)
    min_eye_aspect_ratio: float = Field(default=_T.min_eye_aspect_ratio, ge=0, le=1)
    max_background_edges: float | None = Field(default=_T.max_background_edges, gt=0, le=1)

    @model_validator(mode="after")
    def _band(self) -> FaceQualityLimits:
        if self.min_brightness >= self.max_brightness:
            raise ValueError("min_brightness must be below max_brightness")
        return self

    def thresholds(self) -> face.QualityThresholds:
        """These settings as the thresholds biometrics.face.assess takes."""
        return face.QualityThresholds(**self.model_dump())


# The head from the eye line to the crown is about 1.8 eye distances (eye centres ~63 mm
# apart, crown ~115 mm above them): with the eyes at 45 % of the frame height from the top
# (where biometrics.face aims them, ICAO 9303-3 / ISO/IEC 19794-5 portrait geometry) the
# crown stays in the frame while the eye distance is at most 0.45 H / 1.8 = H / 4.
HEAD_FIT_EYE_DISTANCES_PER_HEIGHT = 4.0


class CameraCalibration(_Strict):
    """A camera's calibration targets (``devices.calibration``)."""

    # An 18 % grey card at the right exposure reads sRGB 118; +-1/3 EV (the exposure error
    # ISO 19794-5 / ICAO photo guidance leaves to the face quality check's brightness band)
    # is sRGB 106 - 131.
    grey_level_min: float = Field(default=106.0, ge=0, le=255)
    grey_level_max: float = Field(default=131.0, ge=0, le=255)
    # R/G and B/G of the grey card in linear light: 1 +- this. 8 % is about 1.9 Delta E*ab on
    # a mid grey, under the just-noticeable difference (2.3): ICAO 9303-3 asks for natural
    # colour, without a cast.
    wb_tolerance: float = Field(default=0.08, gt=0, le=0.5)
    # ISO 12233 slanted-edge MTF50, cycles per pixel. A Gaussian blur of sigma s px has
    # MTF50 = 0.187 / s: 0.15 is about s = 1.25 px, beyond which the face quality's
    # sharpness check (variance of the Laplacian) starts refusing good faces.
    min_mtf50: float = Field(default=0.15, gt=0, le=0.5)
    # Flat white field: corners at least 80 % of the centre (lens shading under 1/3 EV), and
    # the brightest cell of a 5 x 5 grid at most 1.3 x the darkest (the face quality check
    # allows 25 % left/right light asymmetry: the camera must not use it up).
    max_vignetting: float = Field(default=0.20, gt=0, lt=1)
    max_grid_ratio: float = Field(default=1.30, gt=1, le=4)
    # A person at the standing mark: at least the ISO 19794-5 minimum of 90 px between the eye
    # centres plus 5 % (people stand a little behind the mark), at most what keeps the whole
    # head in the frame (HEAD_FIT_EYE_DISTANCES_PER_HEIGHT).
    eye_distance_min_px: float = Field(default=95.0, ge=20)
    eye_distance_max_px: float = Field(default=120.0, ge=20)
    # the camera aims at the mark: eye midpoint within this fraction of W / H of the aim point
    max_centre_offset: float = Field(default=0.10, gt=0, le=0.5)

    @model_validator(mode="after")
    def _bands(self) -> CameraCalibration:
        _band(self.grey_level_min, self.grey_level_max, "grey_level")
        _band(self.eye_distance_min_px, self.eye_distance_max_px, "eye_distance")
        return self


class CameraConfig(_Strict):
    """A camera model + firmware."""

    kind: Literal["camera"]
    vendor: str
    model: str = Field(pattern=MODEL_PATTERN)
    firmware: str
    capture: CameraCapture
    quality: FaceQualityLimits = Field(default_factory=FaceQualityLimits)
    calibration: CameraCalibration = Field(default_factory=CameraCalibration)

    @model_validator(mode="after")
    def _calibration_fits(self) -> CameraConfig:
        cal = self.calibration
        if cal.eye_distance_min_px < self.quality.min_eye_distance_px:
            raise ValueError(
                "calibration.eye_distance_min_px is below quality.min_eye_distance_px: a "
                "person at the standing mark would fail the face quality check"
            )
        head_fit = self.capture.height / HEAD_FIT_EYE_DISTANCES_PER_HEIGHT
        if cal.eye_distance_max_px > head_fit:
            raise ValueError(
                f"calibration.eye_distance_max_px is above {head_fit:g} (capture.height / "
                f"{HEAD_FIT_EYE_DISTANCES_PER_HEIGHT:g}): the head would not fit in the frame"
            )
        return self


class FingerprintCapture(_Strict):
    """How the fingerprint scanner is driven."""

    dpi: int = Field(ge=250, le=1000)
    width: int = Field(ge=100)
    height: int = Field(ge=100)
    min_quality: int = Field(
        default=40, ge=0, le=100, description="NFIQ 2 (fingerprint.quality) below this: re-capture"
    )


class FingerprintCalibration(_Strict):
    """A fingerprint scanner's calibration targets (``devices.calibration``)."""

    # FBI EBTS Appendix F (Image Quality Specifications), grey-level uniformity: any two
    # 0.25 x 0.25 inch areas of a light target differ by at most 12 grey levels on average.
    platen_max_non_uniformity: float = Field(default=12.0, gt=0, le=255)
    # A spot of one ridge period (adult ridges 0.4 - 0.55 mm apart) can hide or fake a
    # minutia: any dark spot larger than this fails the platen check.
    platen_max_dirt_spot_mm: float = Field(default=0.5, gt=0, le=10)
    # EBTS Appendix F: the scanner's real resolution within +-1 % of the declared one
    # (500 ppi: 495 - 505), which its geometric accuracy (1 % across bars) relies on.
    dpi_tolerance_percent: float = Field(default=1.0, gt=0, le=10)
    # the ridge-spacing target: a grating of parallel lines of this period
    resolution_target_period_mm: float = Field(default=0.5, gt=0.05, le=5)
    # NFIQ 2 of the reference (replica) finger: at least this, and no more than
    # ``reference_max_drop`` below the median of its earlier results (NFIQ 2 of one finger
    # varies by about +-5 between placements: a drop of 10 is the device, not the placement)
    reference_min_quality: int = Field(default=40, ge=0, le=100)
    reference_max_drop: int = Field(default=10, ge=1, le=100)


class FingerprintConfig(_Strict):
    """A fingerprint scanner model + firmware."""

    kind: Literal["fingerprint"]
    vendor: str
    model: str = Field(pattern=MODEL_PATTERN)
    firmware: str
    capture: FingerprintCapture
    calibration: FingerprintCalibration = Field(default_factory=FingerprintCalibration)


class CardReaderCalibration(_Strict):
    """A PC/SC card reader's calibration targets (``devices.calibration``)."""

    # how many APDUs a measurement times
    apdu_samples: int = Field(default=50, ge=5, le=1000)
    # A document read is about 100 - 150 APDUs (BAC, then DG1 and a 15 - 25 KB DG2 in
    # 223-byte READ BINARYs under secure messaging): at 50 ms each it takes 5 - 7 s, the most
    # a person holds a card still without being told twice. p95: stalls that make a read
    # visibly hang, or a flaky contactless field.
    max_median_ms: float = Field(default=50.0, gt=0, le=10_000)
    max_p95_ms: float = Field(default=150.0, gt=0, le=10_000)

    @model_validator(mode="after")
    def _order(self) -> CardReaderCalibration:
        if self.max_p95_ms < self.max_median_ms:
            raise ValueError("max_p95_ms must not be below max_median_ms")
        return self


class CardReaderConfig(_Strict):
    """A PC/SC ID-card reader model + firmware."""

    kind: Literal["card_reader"]
    vendor: str
    model: str = Field(pattern=MODEL_PATTERN)
    firmware: str
    calibration: CardReaderCalibration = Field(default_factory=CardReaderCalibration)


AnyConfig = CameraConfig | FingerprintConfig | CardReaderConfig
FirmwareConfig = Annotated[AnyConfig, Field(discriminator="kind")]


class _File(_Strict):
    device: FirmwareConfig


class FirmwareConfigError(DeviceError, ValueError):
    """A firmware configuration file is unreadable or does not follow the schema; or a change
    to one was refused. ``code`` says why: ``firmware_invalid`` (the schema),
    ``firmware_unsigned``, ``firmware_bad_signature``, ``firmware_why_missing`` (who / why),
    ``firmware_kind_changed``, ``firmware_wrong_kind`` (``by_model``),
    ``firmware_unknown_model``, ``firmware_unknown_version``, ``firmware_bad_model`` (not a
    model name), ``firmware_tampered`` (a stored version changed), ``firmware_untrusted_signer``
    (signed by a key no longer trusted)."""

    code = "firmware_invalid"


def _explain(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())


def parse(text: str | bytes, source: str = "<text>") -> AnyConfig:
    """Validate a firmware configuration given as YAML text (FirmwareConfigError if not)."""
    try:
        data = yaml.safe_load(text)
        return _File.model_validate(data).device
    except yaml.YAMLError as exc:
        raise FirmwareConfigError(f"{source}: not YAML: {exc}") from exc
    except ValidationError as exc:
        raise FirmwareConfigError(f"{source}: {_explain(exc)}") from exc


def load(path: Path) -> AnyConfig:
    """Read and validate one firmware configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FirmwareConfigError(f"{path}: cannot read: {exc}") from exc
    return parse(text, str(path))


def shipped() -> list[Path]:
    """The configuration files shipped with the software."""
    root = resources.files("firmware_configs")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


def _firmware_key(config: AnyConfig) -> tuple[int, ...]:
    return tuple(int(x) for x in config.firmware.split(".") if x.isdigit())


@functools.cache
def _shipped_index() -> dict[str, Path]:
    """Model -> the file of its newest shipped firmware (package data: read once)."""
    newest: dict[str, tuple[AnyConfig, Path]] = {}
    for path in shipped():
        config = load(path)
        known = newest.get(config.model)
        if known is None or _firmware_key(config) > _firmware_key(known[0]):
            newest[config.model] = (config, path)
    return {model: path for model, (_, path) in newest.items()}


def _shipped_path(model: str) -> Path:
    path = _shipped_index().get(model)
    if path is None:
        raise FirmwareConfigError(
            f"no shipped firmware configuration for model {model!r}", "firmware_unknown_model"
        )
    return path


_K = TypeVar("_K", CameraConfig, FingerprintConfig, CardReaderConfig)


@overload
def by_model(model: str) -> CameraConfig | FingerprintConfig: ...
@overload
def by_model(model: str, kind: type[_K]) -> _K: ...
def by_model(
    model: str,
    kind: type[Any] | None = None,
) -> AnyConfig:
    """The shipped configuration of a device model (the newest firmware if several).

    Without ``kind``: a capture device's (camera or fingerprint scanner); pass ``kind`` (e.g.
    ``CardReaderConfig``) for other kinds, or to have the kind checked. FirmwareConfigError
    when the model ships no configuration, or one of another kind."""
    config = load(_shipped_path(model))
    expected: tuple[type[AnyConfig], ...] = (
        (CameraConfig, FingerprintConfig) if kind is None else (kind,)
    )
    if not isinstance(config, expected):
        raise FirmwareConfigError(
            f"{model} is a {config.kind} configuration, not a "
            + " or ".join(k.__name__ for k in expected),
            "firmware_wrong_kind",
        )
    return config


# ------------------------------------------------------------------------------ signatures
def sign(text: bytes, key: Ed25519PrivateKey) -> bytes:
    """The detached Ed25519 signature of a configuration file's exact bytes."""
    return key.sign(text)


def signature_file(path: Path | str) -> Path:
    """Where the signature of ``path`` is kept: ``path + ".sig"`` (its base64 on one line)."""
    p = Path(path)
    return p.with_name(p.name + ".sig")


def write_signature(path: Path | str, signature: bytes) -> Path:
    """Write ``signature`` as the base64 ``.sig`` file of ``path``; returns that file."""
    sig = signature_file(path)
    sig.write_text(base64.b64encode(signature).decode("ascii") + "\n", encoding="ascii")
    return sig


def read_signature(sig_path: Path | str) -> bytes:
    """The signature in a ``.sig`` file (base64); FirmwareConfigError if it is not one."""
    try:
        raw = Path(sig_path).read_text(encoding="ascii").strip()
        signature = base64.b64decode(raw, validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error) as exc:
        raise FirmwareConfigError(
            f"{sig_path}: not a base64 signature file: {exc}", "firmware_bad_signature"
        ) from exc
    if len(signature) != 64:
        raise FirmwareConfigError(
            f"{sig_path}: an Ed25519 signature is 64 bytes, not {len(signature)}",
            "firmware_bad_signature",
        )
    return signature


def key_id(key: Ed25519PublicKey) -> str:
    """A short, stable name of a signer: the first 16 hex digits of SHA-256 of its raw key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


SIGNERS_FOLDER = "firmware-signers"


def load_signers(trust_dir: Path | str) -> list[Ed25519PublicKey]:
    """The trusted firmware signers of a trust folder: every ``firmware-signers/*.pem`` in it,
    each one Ed25519 public key in PEM (SubjectPublicKeyInfo, as ``openssl pkey -pubout``
    writes it). A missing folder is no signers; a file that is not such a key is an error."""
    folder = Path(trust_dir) / SIGNERS_FOLDER
    keys: list[Ed25519PublicKey] = []
    if not folder.is_dir():
        return keys
    for pem in sorted(folder.glob("*.pem")):
        try:
            key = serialization.load_pem_public_key(pem.read_bytes())
        except (OSError, ValueError) as exc:
            raise FirmwareConfigError(f"{pem}: not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise FirmwareConfigError(f"{pem}: not an Ed25519 key ({type(key).__name__})")
        keys.append(key)
    return keys


def _stat(path: Path) -> tuple[int, int, int] | None:
    """What tells a file changed (inode, size, mtime), or None when it is not there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- the store
@dataclass(frozen=True)
class FirmwareChange:
    """One line of a model's change log: a version and how it came to be."""

    version: int
    at: datetime  # UTC
    who: str
    why: str
    action: Literal["set", "rollback"]
    sha256: str  # of the version's file bytes
    signed_by: str | None  # key_id of the signer; None: made in technician mode, unsigned
    technician_mode: bool
    rollback_to: int | None = None  # for a rollback: the version whose content it restores

    def to_dict(self) -> dict[str, Any]:
        """The log line's fields (``at`` as ISO 8601)."""
        return {
            "version": self.version,
            "at": self.at.isoformat(),
            "who": self.who,
            "why": self.why,
            "action": self.action,
            "sha256": self.sha256,
            "signed_by": self.signed_by,
            "technician_mode": self.technician_mode,
            "rollback_to": self.rollback_to,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FirmwareChange:
        """Read back a log line written by :meth:`to_dict`."""
        return cls(
            version=int(d["version"]),
            at=datetime.fromisoformat(d["at"]),
            who=str(d["who"]),
            why=str(d["why"]),
            action=d["action"],
            sha256=str(d["sha256"]),
            signed_by=d.get("signed_by"),
            technician_mode=bool(d.get("technician_mode", False)),
            rollback_to=d.get("rollback_to"),
        )


_LOG = "changes.jsonl"
FIRMWARE_FOLDER = "firmware"  # the store's root in the daemon's state folder
SHIPPED_VERSION = 0  # version 0 of every model: its shipped configuration


class FirmwareStore:
    """The firmware configurations of one kiosk, every version kept, changes signed.

    Layout: ``root/<model>/<n>.yaml`` (read-only once written), ``<n>.yaml.sig`` (the base64
    signature, when signed) and ``root/<model>/changes.jsonl`` (one JSON line per version:
    :class:`FirmwareChange`). The log is authoritative: the active version is its last line;
    version 0 is the shipped configuration (``firmware_configs``), active while the model has
    no change. Safe across threads and processes (a lock file per model).

    Reading a version checks its bytes against the SHA-256 in the log (``firmware_tampered``)
    and, when the store has signers, its signature: a version signed by a key no longer
    trusted is refused (``firmware_untrusted_signer``; roll back or sign it again). A store
    without signers (inspection only) checks the SHA-256 alone.
    """

    def __init__(self, root: Path | str, signers: Sequence[Ed25519PublicKey] = ()) -> None:
        self.root = Path(root)
        self.signers = list(signers)
        self._lock = threading.Lock()
        # model -> (change log stamp, version in force, its configuration, its file's stamp)
        self._cache: dict[str, tuple[object, int, AnyConfig, object]] = {}

    # ---------------------------------------------------------------- reading
    def _dir(self, model: str) -> Path:
        if not re.fullmatch(MODEL_PATTERN, model):
            raise FirmwareConfigError(f"not a device model name: {model!r}", "firmware_bad_model")
        return self.root / model

    def history(self, model: str) -> list[FirmwareChange]:
        """Every change of ``model``, oldest first (empty: the shipped one is active)."""
        log = self._dir(model) / _LOG
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FirmwareConfigError(f"{log}: cannot read: {exc}") from exc
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(FirmwareChange.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise FirmwareConfigError(
                    f"{log}:{n}: corrupt change log line: {exc}", "firmware_tampered"
                ) from exc
        return out

    def versions(self, model: str) -> list[int]:
        """The versions of ``model`` there are: 0 (shipped, if it ships) and every change."""
        shipped_too = [SHIPPED_VERSION] if self._ships(model) else []
        return shipped_too + [c.version for c in self.history(model)]

    def _ships(self, model: str) -> bool:
        try:
            _shipped_path(model)
        except FirmwareConfigError:
            return False
        return True

    def _active_version(self, model: str) -> int:
        changes = self.history(model)
        if changes:
            return changes[-1].version
        if self._ships(model):
            return SHIPPED_VERSION
        raise FirmwareConfigError(
            f"no firmware configuration for model {model!r}", "firmware_unknown_model"
        )

    def _bytes(self, model: str, version: int) -> bytes:
        """The exact bytes of a version, checked against the log (and its signature)."""
        if version == SHIPPED_VERSION:
            return _shipped_path(model).read_bytes()
        change = next((c for c in self.history(model) if c.version == version), None)
        if change is None:
            raise FirmwareConfigError(
                f"{model} has no version {version} (versions: {self.versions(model)})",
                "firmware_unknown_version",
            )
        path = self._dir(model) / f"{version}.yaml"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FirmwareConfigError(f"{path}: cannot read: {exc}", "firmware_tampered") from exc
        if hashlib.sha256(data).hexdigest() != change.sha256:
            raise FirmwareConfigError(
                f"{path} was changed after it was written (SHA-256 differs from the log)",
                "firmware_tampered",
            )
        if change.signed_by is not None and self.signers:
            if change.signed_by not in {key_id(k) for k in self.signers}:
                raise FirmwareConfigError(
                    f"{model} version {version} is signed by {change.signed_by}, who is no "
                    "longer a trusted signer: roll back or set a newly signed version",
                    "firmware_untrusted_signer",
                )
            signer = self._verify(data, read_signature(signature_file(path)))
            if signer is None or key_id(signer) != change.signed_by:
                raise FirmwareConfigError(
                    f"{path}: its signature no longer verifies with signer {change.signed_by}",
                    "firmware_tampered",
                )
        return data

    def show(self, model: str, version: int | None = None) -> str:
        """The YAML text of a version of ``model`` (default: the active one)."""
        v = self._active_version(model) if version is None else version
        return self._bytes(model, v).decode("utf-8")

    def active(self, model: str) -> AnyConfig:
        """The configuration in force for ``model``: its last change, else the shipped one.
        Read again only when the change log or the version's file changed (a capture asks
        for it every time)."""
        return self._in_force(model)[1]

    def _in_force(self, model: str) -> tuple[int, AnyConfig]:
        folder = self._dir(model)
        stamp = (_stat(folder / _LOG), self.signers and len(self.signers))
        cached = self._cache.get(model)
        if cached is not None and cached[0] == stamp:
            version, config, file_stamp = cached[1], cached[2], cached[3]
            if version == SHIPPED_VERSION or _stat(folder / f"{version}.yaml") == file_stamp:
                return version, config
        version = self._active_version(model)
        config = parse(self._bytes(model, version), f"{model} version {version}")
        self._cache[model] = (stamp, version, config, _stat(folder / f"{version}.yaml"))
        return version, config

    def active_version(self, model: str) -> int:
        """The number of the version in force (0: the shipped one)."""
        return self._in_force(model)[0]

    def diff(self, model: str, a: int | None = None, b: int | None = None) -> str:
        """A unified diff from version ``a`` to version ``b`` of ``model``. Default ``b``: the
        active version; default ``a``: the version before ``b``. Empty when they are equal."""
        versions = self.versions(model)
        if b is None:
            b = self._active_version(model)
        if a is None:
            earlier = [v for v in versions if v < b]
            if not earlier:
                return ""
            a = earlier[-1]
        old, new = self.show(model, a), self.show(model, b)
        return "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"{model}/{a}.yaml",
                tofile=f"{model}/{b}.yaml",
            )
        )

    # ---------------------------------------------------------------- changing
    def _verify(self, data: bytes, signature: bytes) -> Ed25519PublicKey | None:
        for key in self.signers:
            try:
                key.verify(signature, data)
            except InvalidSignature:
                continue
            return key
        return None

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        folder = self._dir(model)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock, open(folder / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set(
        self,
        text: str,
        who: str,
        why: str,
        signature: bytes | None = None,
        technician_mode: bool = False,
    ) -> int:
        """Make ``text`` (a YAML configuration) the active one of its model; returns its new
        version number.

        The text is validated against the schema first. It must carry an Ed25519 signature
        of its exact UTF-8 bytes by one of the store's signers, unless ``technician_mode``
        (recorded as such). FirmwareConfigError with ``code``: ``firmware_invalid``,
        ``firmware_why_missing`` (``who`` and ``why`` are mandatory), ``firmware_unsigned``,
        ``firmware_bad_signature`` (also in technician mode: a signature given must verify),
        ``firmware_kind_changed`` (a camera's configuration stays a camera's).
        """
        data = text.encode("utf-8")
        config = parse(data, "new configuration")
        self._require_reason(who, why)
        signer: Ed25519PublicKey | None = None
        if signature is not None:
            signer = self._verify(data, signature)
            if signer is None:
                raise FirmwareConfigError(
                    "the signature does not verify with any trusted firmware signer"
                    + ("" if self.signers else " (no signers are trusted: see --trust)"),
                    "firmware_bad_signature",
                )
        elif not technician_mode:
            raise FirmwareConfigError(
                "a firmware configuration change must be signed by a trusted signer "
                "(or made in technician mode)",
                "firmware_unsigned",
            )
        with self._locked(config.model):
            kind = self._kind(config.model)
            if kind is not None and kind != config.kind:
                raise FirmwareConfigError(
                    f"{config.model} is a {kind}, not a {config.kind}", "firmware_kind_changed"
                )
            return self._append(
                config.model, data, signature, signer, who, why, technician_mode, "set", None
            )

    def _kind(self, model: str) -> str | None:
        """The kind of device ``model`` is: its shipped configuration's, else its first
        version's (read as it is: a version that no longer verifies must not stop a fix)."""
        if self._ships(model):
            return load(_shipped_path(model)).kind
        changes = self.history(model)
        if not changes:
            return None
        try:
            data = (self._dir(model) / f"{changes[0].version}.yaml").read_bytes()
            return parse(data).kind
        except (OSError, FirmwareConfigError):
            return None

    def rollback(self, model: str, who: str, why: str, to: int | None = None) -> int:
        """Make an earlier version's content active again, as a new version (recorded like
        any change); returns its number. Default ``to``: the version before the active one
        (0: the shipped configuration). A signed version's signature travels with it."""
        self._require_reason(who, why)
        with self._locked(model):
            current = self._active_version(model)
            if to is None:
                earlier = [v for v in self.versions(model) if v < current]
                if not earlier:
                    raise FirmwareConfigError(
                        f"{model} has no version before {current} to roll back to",
                        "firmware_unknown_version",
                    )
                to = earlier[-1]
            data = self._bytes(model, to)
            signature: bytes | None = None
            signer: Ed25519PublicKey | None = None
            if to != SHIPPED_VERSION:
                sig_path = signature_file(self._dir(model) / f"{to}.yaml")
                if sig_path.exists():
                    signature = read_signature(sig_path)
                    signer = self._verify(data, signature)
            # the shipped configuration and signed versions are trusted as they are; an
            # unsigned one was a technician-mode change and stays one
            unsigned = to != SHIPPED_VERSION and signer is None
            return self._append(model, data, signature, signer, who, why, unsigned, "rollback", to)

    @staticmethod
    def _require_reason(who: str, why: str) -> None:
        if not who or not who.strip():
            raise FirmwareConfigError("who makes the change is mandatory", "firmware_why_missing")
        if not why or not why.strip():
            raise FirmwareConfigError("why the change is made is mandatory", "firmware_why_missing")

    def _append(
        self,
        model: str,
        data: bytes,
        signature: bytes | None,
        signer: Ed25519PublicKey | None,
        who: str,
        why: str,
        technician_mode: bool,
        action: Literal["set", "rollback"],
        rollback_to: int | None,
    ) -> int:
        folder = self._dir(model)
        history = self.history(model)
        version = (history[-1].version if history else SHIPPED_VERSION) + 1
        while True:  # a file without a log line (a crash in between) keeps its number
            path = folder / f"{version}.yaml"
            if not _write_new(path, data):
                version += 1
                continue
            break
        if signature is not None and signer is not None:
            sig = signature_file(path)
            with contextlib.suppress(FileNotFoundError):
                sig.unlink()  # left by a crash before this version was logged
            write_signature(path, signature)
            sig.chmod(0o444)
        change = FirmwareChange(
            version=version,
            at=datetime.now(UTC),
            who=who.strip(),
            why=why.strip(),
            action=action,
            sha256=hashlib.sha256(data).hexdigest(),
            signed_by=key_id(signer) if signer is not None else None,
            technician_mode=technician_mode,
            rollback_to=rollback_to,
        )
        line = json.dumps(change.to_dict(), ensure_ascii=False) + "\n"
        fd = os.open(folder / _LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return version


def _write_new(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` whole (fsynced, read-only) unless ``path`` exists: False."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        try:
            os.link(tmp, path)  # atomic, and never replaces an existing version
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)
