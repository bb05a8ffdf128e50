"""libfprint fingerprint readers: the single-finger USB readers Linux supports, through
libfprint 2 (``libfprint-2-2``) and its GObject introspection data (``gir1.2-fprint-2.0``),
reached with PyGObject (``gi``). ``scripts/install-libfprint.sh`` installs them.

Only readers that give **images** (libfprint's ``CAPTURE`` feature: the image sensors) are of
use here: the registry matches 1:N on its own templates, so a match-on-chip reader, which keeps
its templates inside and answers only "match"/"no match", is refused with a clear error.

Nothing is imported at import time: a kiosk without libfprint imports this module fine and
gets a ``FingerprintReaderError`` (``device_lost``, "libfprint is not installed") on use.

libfprint works on GLib's global default main context (its device enumeration iterates that
one, whatever context a thread has pushed), so this module iterates it too, from the calling
thread, and serialises every libfprint call in the process with one lock: a reader may be
used from any thread, one call at a time (a capture while another call runs fails at once
with ``busy``). Do not run a GLib main loop elsewhere in the same process. Every wait has a
deadline (a ``GCancellable``): a kiosk never hangs.

libfprint's test driver ``virtual_image`` (a device that appears when ``FP_VIRTUAL_IMAGE``
names a Unix socket; the "finger" is an image written to it) drives the tests. libfprint
reads that variable when it enumerates devices: at each ``list_devices()`` and each new
``LibfprintReader``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.fingerprint import POSITIONS, DeviceInfo, FingerprintReader, FingerprintReaderError

log = logging.getLogger(__name__)

NOT_INSTALLED = "libfprint is not installed"
MM_PER_INCH = 25.4
TICK_S = 0.1  # how often a wait wakes up to check its deadline
GRACE_S = 5.0  # how long a cancelled operation may take to wind down
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
LOCK_WAIT_S = 1.0  # how long opening or listing waits for another thread's libfprint call
# libfprint iterates GLib's global default main context: one libfprint call at a time
_LIBFPRINT = threading.Lock()
# libfprint's FpDeviceFeature flags, by the name list_devices() reports
FEATURES = (
    "CAPTURE",
    "IDENTIFY",
    "VERIFY",
    "DUPLICATES_CHECK",
    "STORAGE",
    "STORAGE_LIST",
    "STORAGE_DELETE",
    "STORAGE_CLEAR",
    "UPDATE_PRINT",
    "ALWAYS_ON",
)
RETRY_MESSAGES = {  # FpDeviceRetry: the finger was seen but not read well enough
    "TOO_SHORT": "the swipe was too short: swipe the finger again",
    "CENTER_FINGER": "the finger was not centred: place it again in the middle",
    "REMOVE_FINGER": "lift the finger and place it again",
    "GENERAL": "the finger could not be read: place it again",
}


@dataclass(frozen=True)
class LibfprintDevice:
    """A reader libfprint found (``devices discover``); ``driver`` opens it as
    ``libfprint:<driver>``."""

    driver: str  # libfprint's driver id, e.g. "uru4000", "virtual_image"
    name: str  # the model, as libfprint names it
    device_id: str  # libfprint's id of the device (USB bus/port based, or "0")
    features: tuple[str, ...]  # lower-case FpDeviceFeature names: "capture", "verify", ...
    scan_type: str  # "press" or "swipe"

    @property
    def gives_images(self) -> bool:
        """Whether this reader can be used here (image capture; not match-on-chip only)."""
        return "capture" in self.features


@dataclass(frozen=True)
class _GI:
    """The introspected modules, loaded on first use."""

    FPrint: Any
    GLib: Any
    Gio: Any


def _load() -> _GI:
    """Import PyGObject and libfprint's typelib; FingerprintReaderError if either is missing."""
    try:
        import gi
    except ImportError as exc:
        raise FingerprintReaderError(
            f"{NOT_INSTALLED}: PyGObject (gi) is missing ({exc}); run scripts/install-libfprint.sh",
            "device_lost",
        ) from exc
    try:
        gi.require_version("FPrint", "2.0")
        from gi.repository import FPrint, Gio, GLib
    except (ImportError, ValueError) as exc:
        raise FingerprintReaderError(
            f"{NOT_INSTALLED}: the FPrint 2.0 typelib is missing ({exc}); "
            "apt-get install libfprint-2-2 gir1.2-fprint-2.0",
            "device_lost",
        ) from exc
    return _GI(FPrint, GLib, Gio)


def _describe(gi: _GI, dev: Any) -> LibfprintDevice:
    """What libfprint says about an ``FPrint.Device`` (unopened is fine)."""
    flag = gi.FPrint.DeviceFeature
    features = tuple(
        name.lower()
        for name in FEATURES
        if hasattr(flag, name) and dev.has_feature(getattr(flag, name))
    )
    try:
        scan_type = str(dev.get_scan_type().value_nick)
    except AttributeError:  # an enum value PyGObject cannot name
        scan_type = ""
    return LibfprintDevice(
        driver=str(dev.get_driver()),
        name=str(dev.get_name() or ""),
        device_id=str(dev.get_device_id() or ""),
        features=features,
        scan_type=scan_type,
    )


def list_devices() -> list[LibfprintDevice]:
    """Every reader libfprint finds now (USB readers it supports, and its virtual test
    devices where their ``FP_VIRTUAL_*`` variable is set), match-on-chip ones included (see
    :attr:`LibfprintDevice.gives_images`). FingerprintReaderError (``device_lost``) when
    libfprint is not installed."""
    gi = _load()
    with _exclusive(LOCK_WAIT_S):
        _context, devices = _enumerate(gi)
        return [_describe(gi, dev) for dev in devices]


@contextlib.contextmanager
def _exclusive(wait: float) -> Iterator[None]:
    """Hold the process' libfprint lock (``busy`` if another call keeps it ``wait`` s)."""
    if not _LIBFPRINT.acquire(timeout=wait):
        raise FingerprintReaderError("the fingerprint reader is busy", "busy")
    try:
        yield
    finally:
        _LIBFPRINT.release()


def _enumerate(gi: _GI) -> tuple[Any, list[Any]]:
    """A new FpContext and its devices (USB readers, and virtual ones their variables name).
    The context must outlive the devices' use: it holds their USB context."""
    try:
        context = gi.FPrint.Context.new()
        devices = list(context.get_devices())
    except gi.GLib.Error as exc:
        raise FingerprintReaderError(
            f"libfprint could not list readers: {exc.message}", "device_lost"
        ) from exc
    return context, devices


def _driver_name(driver: str | None) -> str | None:
    """``None``, ``""``, ``"uru4000"`` or the whole spec ``"libfprint:uru4000"`` -> the
    libfprint driver id, or None for "the first reader"."""
    if driver is None:
        return None
    name = driver.strip()
    if name.startswith("libfprint:"):
        name = name[len("libfprint:") :]
    elif name == "libfprint":
        name = ""
    return name or None


class LibfprintReader(FingerprintReader):
    """A single-finger image reader libfprint drives, opened by driver id (``uru4000``,
    ``virtual_image``) or, with ``driver=None``, the first reader that gives images.

    ``timeout`` is how long a capture waits for a finger before it fails with ``timeout``.
    Images come out at ``dpi`` (500 by default): libfprint reports a sensor's resolution
    where it knows it; where it does not (it reports 0 for most drivers, which are 500 dpi
    sensors), ``sensor_dpi`` says it (default: ``dpi``, i.e. no resampling). A sensor at
    another resolution is resampled to ``dpi``."""

    def __init__(
        self,
        driver: str | None = None,
        timeout: float = 30.0,
        *,
        dpi: int = 500,
        sensor_dpi: float | None = None,
        open_timeout: float = OPEN_TIMEOUT_S,
    ) -> None:
        if timeout <= 0 or open_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if dpi <= 0 or (sensor_dpi is not None and sensor_dpi <= 0):
            raise ValueError("resolutions must be positive")
        self.timeout, self.dpi, self.sensor_dpi = float(timeout), int(dpi), sensor_dpi
        self._gi = _load()
        self._current: Any = None  # the GCancellable of the operation under way
        self._closed = False
        wanted = _driver_name(driver)
        with _exclusive(LOCK_WAIT_S):
            self._context, devices = _enumerate(self._gi)
            self._device = self._choose(devices, wanted)
            self._about = _describe(self._gi, self._device)
            dev = self._device
            self._run(
                lambda cancel, done: dev.open(cancel, done), dev.open_finish, open_timeout, "open"
            )
        log.info("libfprint reader open: %s (%s)", self._about.name, self._about.driver)

    # ------------------------------------------------------------------ opening
    def _choose(self, devices: list[Any], wanted: str | None) -> Any:
        """The device to open: the first of driver ``wanted`` (or of any driver) that gives
        images."""
        described = [_describe(self._gi, d) for d in devices]
        candidates = [
            (dev, about)
            for dev, about in zip(devices, described, strict=True)
            if wanted is None or about.driver == wanted
        ]
        if not candidates:
            present = ", ".join(f"{a.driver} ({a.name})" for a in described) or "none"
            which = f"with driver {wanted!r} " if wanted else ""
            raise FingerprintReaderError(
                f"no libfprint fingerprint reader {which}is connected (found: {present})",
                "device_lost",
            )
        for dev, about in candidates:
            if about.gives_images:
                return dev
        about = candidates[0][1]
        raise FingerprintReaderError(
            f"the fingerprint reader {about.name!r} (libfprint:{about.driver}) matches on its "
            "chip and gives no images; the registry needs finger images for its 1:N search: "
            "use an image reader",
            "device_lost",
        )

    # ------------------------------------------------------------------ waiting
    def _run(
        self,
        begin: Callable[[Any, Callable[..., None]], None],
        finish: Callable[[Any], Any],
        timeout: float,
        what: str,
    ) -> Any:
        """Start an asynchronous libfprint call, iterate GLib's main context until it
        completes, cancel it at ``timeout`` seconds; its result, or FingerprintReaderError.
        The caller holds the libfprint lock."""
        GLib, Gio = self._gi.GLib, self._gi.Gio
        main = GLib.MainContext.default()
        cancellable = Gio.Cancellable.new()
        outcome: list[Any] = []
        expired: list[bool] = []
        deadline = time.monotonic() + timeout
        hard_deadline = deadline + GRACE_S

        def done(_source: Any, result: Any, *_user_data: Any) -> None:
            outcome.append(result)

        def tick(*_args: Any) -> bool:
            if not expired and time.monotonic() >= deadline:
                expired.append(True)
                cancellable.cancel()
            return True  # GLib.SOURCE_CONTINUE: keeps waking the loop up

        ticker = GLib.timeout_source_new(int(TICK_S * 1000))
        ticker.set_callback(tick)
        ticker.attach(main)
        self._current = cancellable
        try:
            begin(cancellable, done)
            while not outcome and time.monotonic() < hard_deadline:
                main.iteration(True)
        finally:
            ticker.destroy()
            self._current = None
        if not outcome:
            raise FingerprintReaderError(
                f"the fingerprint reader did not answer ({what}) within {timeout + GRACE_S:g} s",
                "timeout",
            )
        try:
            return finish(outcome[0])
        except GLib.Error as exc:
            raise self._error(exc, what, timeout if expired else None) from None

    def _error(self, exc: Any, what: str, timed_out: float | None) -> FingerprintReaderError:
        """libfprint's GError -> FingerprintReaderError with the interface's code."""
        FPrint, Gio, GLib = self._gi.FPrint, self._gi.Gio, self._gi.GLib
        retry = GLib.quark_to_string(FPrint.device_retry_quark())
        device = GLib.quark_to_string(FPrint.device_error_quark())
        if exc.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED):
            if timed_out is None:  # cancelled by close()
                return FingerprintReaderError(
                    f"the fingerprint reader was closed ({what})", "device_lost"
                )
            if what == "capture":
                return FingerprintReaderError(
                    f"no finger was read within {timed_out:g} s", "timeout"
                )
            return FingerprintReaderError(
                f"the fingerprint reader did not {what} within {timed_out:g} s", "timeout"
            )
        if exc.domain == retry:
            name = FPrint.DeviceRetry(exc.code).value_name.removeprefix("FP_DEVICE_RETRY_")
            return FingerprintReaderError(RETRY_MESSAGES.get(name, exc.message), "no_finger")
        if exc.domain == device:
            code = FPrint.DeviceError(exc.code)
            if code == FPrint.DeviceError.BUSY:
                return FingerprintReaderError(
                    "the fingerprint reader is busy (with an operation not yet ended, or held "
                    f"by another program such as fprintd): {exc.message}",
                    "busy",
                )
            if code == FPrint.DeviceError.TOO_HOT:
                return FingerprintReaderError(
                    "the fingerprint reader is too hot: wait a few minutes", "busy"
                )
        return FingerprintReaderError(
            f"the fingerprint reader failed ({what}): {exc.message}", "device_lost"
        )

    # ------------------------------------------------------------------ the interface
    def info(self) -> DeviceInfo:
        """The reader's libfprint driver, model name and device id (libfprint reports no
        vendor, serial number or firmware version)."""
        about = self._about
        return DeviceInfo(
            kind="fingerprint",
            driver=f"libfprint:{about.driver}",
            vendor="",
            model=about.name,
            serial=about.device_id,
            firmware="",
        )

    @property
    def device(self) -> LibfprintDevice:
        """What libfprint says about the open reader."""
        return self._about

    def capture(self, position: int) -> np.ndarray:
        """Wait for a finger (at most ``timeout`` seconds) and return its image: grey uint8,
        dark ridges on light, at ``dpi``. A single-finger reader: ``position`` (1-10) only
        says which finger the citizen was asked for."""
        if position not in POSITIONS:
            raise ValueError(f"finger position must be 1-10, not {position}")
        with _exclusive(0):
            if self._closed:
                raise FingerprintReaderError("the fingerprint reader is closed", "device_lost")
            dev = self._device
            if dev.props.removed:
                raise FingerprintReaderError("the fingerprint reader was unplugged", "device_lost")
            image = self._run(
                lambda cancel, done: dev.capture(True, cancel, done),
                dev.capture_finish,
                self.timeout,
                "capture",
            )
        return image_pixels(image, self.dpi, self.sensor_dpi)

    def close(self) -> None:
        """Close the reader (cancels a capture under way in another thread). Idempotent;
        never raises: a reader that does not close cleanly is logged and dropped."""
        current = self._current
        if current is not None:
            current.cancel()  # GCancellable is thread-safe
        try:
            with _exclusive(GRACE_S + LOCK_WAIT_S):
                if self._closed:
                    return
                self._closed = True
                try:
                    self._close_device(self._device)
                finally:
                    self._device = None  # the device, then its USB context
                    self._context = None
        except FingerprintReaderError as exc:
            log.warning("libfprint reader did not close cleanly: %s", exc)

    def _close_device(self, dev: Any) -> None:
        try:
            self._run(
                lambda cancel, done: dev.close(cancel, done),
                dev.close_finish,
                CLOSE_TIMEOUT_S,
                "close",
            )
        except FingerprintReaderError:
            if not dev.props.removed:
                raise
            # an unplugged reader: libfprint closes it all the same, reporting "removed"

    def __enter__(self) -> LibfprintReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def image_pixels(image: Any, dpi: int = 500, sensor_dpi: float | None = None) -> np.ndarray:
    """An ``FPrint.Image`` -> a (height, width) uint8 array at ``dpi``: taken at the
    resolution libfprint reports, or at ``sensor_dpi`` (default ``dpi``) where it reports
    none. libfprint has already normalised the pixels (flips undone, colours made dark
    ridges on light) while it looked for minutiae."""
    width, height = int(image.get_width()), int(image.get_height())
    data = image.get_data()
    if width <= 0 or height <= 0 or len(data) != width * height:
        raise FingerprintReaderError(
            f"the fingerprint reader gave a malformed image ({width} x {height}, "
            f"{len(data)} bytes)",
            "device_lost",
        )
    pixels = np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width).copy()
    ppmm = float(image.get_ppmm() or 0.0)
    sensor = ppmm * MM_PER_INCH if ppmm > 0 else float(sensor_dpi or dpi)
    return _resample(pixels, sensor, dpi)


def _resample(pixels: np.ndarray, sensor_dpi: float, dpi: int) -> np.ndarray:
    """``pixels`` taken at ``sensor_dpi`` -> at ``dpi`` (unchanged within 0.5 %)."""
    scale = dpi / sensor_dpi
    if abs(scale - 1.0) <= 0.005:
        return pixels
    import cv2

    height, width = pixels.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(pixels, size, interpolation=method), dtype=np.uint8)
