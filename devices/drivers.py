"""Device drivers by name: a spec ``<driver>[:<argument>]`` opens a driver behind the small
interfaces the daemon holds (:class:`devices.camera.Camera`,
:class:`devices.fingerprint.FingerprintReader`; card readers are PC/SC, :mod:`devices.card`).

=====================  =====================================================================
spec                   device
=====================  =====================================================================
``opencv:<i|file|url>`` a UVC camera (``/dev/video<i>``), a video file or a stream, via OpenCV
``sbi:<port>``          a MOSIP SBI 2.0 device service on 127.0.0.1:<port> (face camera or
                        4-4-2 slap fingerprint reader), :mod:`devices.sbi`
``libfprint[:<driver>]`` a single-finger USB reader libfprint supports (the first one, or the
                        first of that libfprint driver), :mod:`devices.libfprint`
``simulated``           the simulated devices (:mod:`devices.simulation`): tests and demo only;
                        the daemon makes them per simulated citizen, never from a spec here
``none``                no device of that kind
=====================  =====================================================================

Vendors add drivers without touching this package: an entry point in the group
``rnp.devices`` named ``camera.<driver>`` or ``fingerprint.<driver>`` whose object is a
factory ``(argument: str, options: DriverOptions) -> Camera | FingerprintReader``.
Built-in drivers win over plug-ins of the same name. Nothing is imported before it is used:
a real kiosk never imports the simulation, a kiosk without libfprint never imports ``gi``.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from devices.camera import Camera, CameraError, OpenCVCamera
from devices.exceptions import DeviceError
from devices.fingerprint import DeviceInfo, FingerprintReader

Kind = Literal["camera", "fingerprint"]
SIMULATED, NONE = "simulated", "none"
ENTRY_POINT_GROUP = "rnp.devices"
SBI_PORTS = range(4501, 4601)  # where SBI 2.0 device services listen (127.0.0.1)
SBI_TRUST_FOLDER = "sbi-ca"  # in the trust folder: the SBI device providers' CAs


class DriverError(DeviceError):
    """A device spec names no driver, or its driver cannot open the device."""

    code = "device_lost"


@dataclass(frozen=True)
class Spec:
    """A parsed device spec: ``driver`` and its ``argument`` (may be empty)."""

    driver: str
    argument: str = ""

    @classmethod
    def parse(cls, text: str) -> Spec:
        """``"sbi:4501"`` -> Spec("sbi", "4501"); DriverError for a malformed spec."""
        driver, _, argument = text.strip().partition(":")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", driver):
            raise DriverError(f"device spec {text!r}: expected <driver>[:<argument>]", "bad_spec")
        return cls(driver, argument)

    def __str__(self) -> str:
        return f"{self.driver}:{self.argument}" if self.argument else self.driver


@dataclass(frozen=True)
class DriverOptions:
    """What a driver may need besides its argument."""

    trust_dir: Path | None = None  # SBI: device-provider CA certificates (``sbi-ca/*.pem``)
    width: int = 640  # cameras: the firmware configuration's capture settings
    height: int = 480
    fps: float = 15.0
    timeout: float = 30.0  # seconds a capture may take before it fails with ``timeout``


# ---------------------------------------------------------------------------- built-ins
def _opencv_camera(argument: str, options: DriverOptions) -> Camera:
    source: int | str = int(argument) if argument.isdigit() else argument
    if argument == "":
        raise DriverError("opencv needs a camera index, a file or a URL: opencv:0", "bad_spec")
    try:
        return OpenCVCamera(source, options.width, options.height, options.fps)
    except CameraError as exc:
        raise DriverError(str(exc)) from exc


def _sbi_port(argument: str) -> int:
    if not argument.isdigit() or int(argument) not in SBI_PORTS:
        raise DriverError(
            f"sbi:{argument}: an SBI device service listens on a port 4501-4600", "bad_spec"
        )
    return int(argument)


def _sbi_camera(argument: str, options: DriverOptions) -> Camera:
    from devices import sbi

    return sbi.SBICamera(
        _sbi_port(argument), trust_dir=_sbi_trust(options), timeout=options.timeout
    )


def _sbi_reader(argument: str, options: DriverOptions) -> FingerprintReader:
    from devices import sbi

    return sbi.SBIFingerprintReader(
        _sbi_port(argument), trust_dir=_sbi_trust(options), timeout=options.timeout
    )


def _sbi_trust(options: DriverOptions) -> Path | None:
    """SBI device providers' CA certificates: ``<trust>/sbi-ca/`` (apart from the CSCAs)."""
    return options.trust_dir / SBI_TRUST_FOLDER if options.trust_dir else None


def _libfprint_reader(argument: str, options: DriverOptions) -> FingerprintReader:
    from devices import libfprint

    return libfprint.LibfprintReader(argument or None, timeout=options.timeout)


Factory = Callable[[str, DriverOptions], object]
_BUILT_IN: dict[Kind, dict[str, Factory]] = {
    "camera": {"opencv": _opencv_camera, "sbi": _sbi_camera},
    "fingerprint": {"sbi": _sbi_reader, "libfprint": _libfprint_reader},
}


def _plugins(kind: Kind) -> dict[str, metadata.EntryPoint]:
    found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    prefix = f"{kind}."
    return {ep.name[len(prefix) :]: ep for ep in found if ep.name.startswith(prefix)}


def drivers(kind: Kind) -> list[str]:
    """The driver names a ``kind`` spec may use: built-in, plug-ins, ``simulated``, ``none``."""
    return sorted({*_BUILT_IN[kind], *_plugins(kind), SIMULATED, NONE})


def check(kind: Kind, spec: str) -> Spec:
    """The parsed spec if its driver exists here; DriverError (``bad_spec``) if not."""
    parsed = Spec.parse(spec)
    if parsed.driver not in drivers(kind):
        raise DriverError(
            f"no {kind} driver {parsed.driver!r} (known: {', '.join(drivers(kind))})", "bad_spec"
        )
    return parsed


def _open(kind: Kind, spec: str, options: DriverOptions) -> object:
    parsed = check(kind, spec)
    if parsed.driver in (SIMULATED, NONE):
        raise DriverError(f"{spec!r} is not a driver that opens a device", "bad_spec")
    factory = _BUILT_IN[kind].get(parsed.driver)
    if factory is None:
        try:
            factory = _plugins(kind)[parsed.driver].load()
        except Exception as exc:  # a broken plug-in: say which, keep the daemon alive
            raise DriverError(f"the {kind} plug-in {parsed.driver!r} cannot load: {exc}") from exc
    return factory(parsed.argument, options)


def open_camera(spec: str, options: DriverOptions | None = None) -> Camera:
    """Open the camera a spec names; DriverError if it cannot be opened."""
    cam = _open("camera", spec, options or DriverOptions())
    if not isinstance(cam, Camera):
        raise DriverError(f"the camera driver of {spec!r} returned no Camera")
    return cam


def open_fingerprint_reader(spec: str, options: DriverOptions | None = None) -> FingerprintReader:
    """Open the fingerprint reader a spec names; DriverError if it cannot be opened."""
    reader = _open("fingerprint", spec, options or DriverOptions())
    if not isinstance(reader, FingerprintReader):
        raise DriverError(f"the fingerprint driver of {spec!r} returned no FingerprintReader")
    return reader


# ---------------------------------------------------------------------------- discovery
def video_devices() -> list[DeviceInfo]:
    """V4L2 capture devices (``/dev/video<i>``), named as the kernel names them."""
    out = []
    for node in sorted(glob.glob("/dev/video[0-9]*"), key=lambda p: int(p[10:])):
        index = node[len("/dev/video") :]
        sysfs = Path(f"/sys/class/video4linux/video{index}")
        name = _read(sysfs / "name") or f"video{index}"
        usb = sysfs / "device" / ".."
        out.append(
            DeviceInfo(
                kind="camera",
                driver=f"opencv:{index}",
                vendor=_read(usb / "manufacturer") or "",
                model=name,
                serial=_read(usb / "serial") or "",
                firmware=_read(usb / "bcdDevice") or "",
            )
        )
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def discover(
    options: DriverOptions | None = None, sbi_ports: range = SBI_PORTS
) -> tuple[list[DeviceInfo], list[str]]:
    """Every device this machine offers, for a technician choosing specs (``devices
    discover``): V4L2 cameras, SBI device services on 127.0.0.1:4501-4600, libfprint readers,
    PC/SC card readers. Returns the devices and, per source that could not be searched, why."""
    options = options or DriverOptions()
    found, problems = video_devices(), []
    try:
        from devices import sbi

        found += sbi.discover_all(sbi_ports, trust_dir=_sbi_trust(options))
    except DeviceError as exc:
        problems.append(f"sbi: {exc}")
    try:
        from devices import libfprint

        found += [
            DeviceInfo("fingerprint", f"libfprint:{d.driver}", "", d.name, d.device_id, "")
            for d in libfprint.list_devices()
        ]
    except DeviceError as exc:
        problems.append(f"libfprint: {exc}")
    from devices import card

    try:
        found += [DeviceInfo("card_reader", name, "", name, "", "pcsc") for name in card.readers()]
    except card.CardError as exc:
        problems.append(f"pcsc: {exc}")
    return found, problems
