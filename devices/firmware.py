"""Firmware configurations: one YAML per device model and firmware, validated by a schema.

They hold what technicians tune per device (capture settings, quality thresholds,
calibration targets). Files ship in the ``firmware_configs`` package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from biometrics import face
from devices.exceptions import DeviceError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class CameraConfig(_Strict):
    """A camera model + firmware."""

    kind: Literal["camera"]
    vendor: str
    model: str
    firmware: str
    capture: CameraCapture
    quality: FaceQualityLimits = Field(default_factory=FaceQualityLimits)


class FingerprintCapture(_Strict):
    """How the fingerprint scanner is driven."""

    dpi: int = Field(ge=250, le=1000)
    width: int = Field(ge=100)
    height: int = Field(ge=100)
    min_quality: int = Field(
        default=40, ge=0, le=100, description="NFIQ 2 (fingerprint.quality) below this: re-capture"
    )


class FingerprintConfig(_Strict):
    """A fingerprint scanner model + firmware."""

    kind: Literal["fingerprint"]
    vendor: str
    model: str
    firmware: str
    capture: FingerprintCapture


FirmwareConfig = Annotated[CameraConfig | FingerprintConfig, Field(discriminator="kind")]


class _File(_Strict):
    device: FirmwareConfig


class FirmwareConfigError(DeviceError, ValueError):
    """A firmware configuration file is unreadable or does not follow the schema."""


def load(path: Path) -> CameraConfig | FingerprintConfig:
    """Read and validate one firmware configuration file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return _File.model_validate(data).device
    except (OSError, yaml.YAMLError) as exc:
        raise FirmwareConfigError(f"{path}: cannot read: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise FirmwareConfigError(f"{path}: {problems}") from exc


def shipped() -> list[Path]:
    """The configuration files shipped with the software."""
    root = resources.files("firmware_configs")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


def by_model(model: str) -> CameraConfig | FingerprintConfig:
    """The shipped configuration of a device model (the newest firmware if several)."""
    found = [c for c in map(load, shipped()) if c.model == model]
    if not found:
        raise FirmwareConfigError(f"no shipped firmware configuration for model {model!r}")
    return max(found, key=lambda c: tuple(int(x) for x in c.firmware.split(".") if x.isdigit()))
