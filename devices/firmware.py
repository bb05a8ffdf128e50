"""Firmware configurations: one YAML per device model and firmware, validated by a schema.

They hold what technicians tune per device (capture settings, quality thresholds,
calibration targets). Files ship in the ``firmware_configs`` package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraCapture(_Strict):
    """How the camera is driven."""

    width: int = Field(ge=320, le=7680)
    height: int = Field(ge=240, le=4320)
    fps: float = Field(gt=0, le=120)
    auto_capture_consecutive: int = Field(default=3, ge=1, le=30)
    timeout_seconds: float = Field(default=30, gt=0, le=300)


class FaceQuality(_Strict):
    """Face image quality thresholds (after ICAO 9303 / ISO/IEC 19794-5 / 29794-5)."""

    min_eye_distance_px: int = Field(default=90, ge=30)
    max_roll_degrees: float = Field(default=8.0, gt=0, le=45)
    min_sharpness: float = Field(default=100.0, ge=0, description="variance of the Laplacian")
    min_mean_brightness: int = Field(default=60, ge=0, le=255)
    max_mean_brightness: int = Field(default=200, ge=0, le=255)


class CameraConfig(_Strict):
    """A camera model + firmware."""

    kind: Literal["camera"]
    vendor: str
    model: str
    firmware: str
    capture: CameraCapture
    quality: FaceQuality = FaceQuality()


class FingerprintCapture(_Strict):
    """How the fingerprint scanner is driven."""

    dpi: int = Field(ge=250, le=1000)
    width: int = Field(ge=100)
    height: int = Field(ge=100)
    min_nfiq2: int = Field(default=40, ge=0, le=100, description="minimum NFIQ 2 score")


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


class FirmwareConfigError(ValueError):
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
