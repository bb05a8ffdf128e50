"""Extraction: image checks, minutiae from LEADER, quality from NFIQ 2.

Minutiae come from LEADER (R. Cappelli et al., "Lightweight End-to-end Attention-gated Dual
Encoder-decodeR", in ``pyfing``), a small neural network that finds minutiae, their directions
and types in the raw image; its weights ship inside pyfing and it runs on Keras's jax backend,
compiled once per image size. Chosen by measurement on FVC2004 beside NIST's mindtct (see the
README): the classic pipeline this replaces (segmentation, Gabor enhancement, thinning) failed
to extract 2-22 % of real prints and reached only 28-37 % EER.

Quality is NIST's NFIQ 2 (nbis-py), 0-100, the unit kiosk thresholds and MOSIP use.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from biometrics.fingerprint._iso import DPI, FingerprintError, FingerprintTemplate, Minutia


@dataclass(frozen=True)
class ExtractionSettings:
    """How images are taken in and minutiae kept."""

    on_other_dpi: Literal["resample", "refuse"] = "resample"
    # LEADER's confidence a minutia needs (pyfing's default, balanced on its own test sets)
    min_confidence: float = 0.6
    min_minutiae: int = 5  # fewer: nothing a matcher could use (no_fingerprint)
    max_minutiae: int = 128  # the most confident kept


DEFAULT_SETTINGS = ExtractionSettings()
# ridges further apart than this at 500 dpi (0.61 mm; adult ridge periods are about 0.4 - 0.55
# mm, children's less): the image's resolution is higher than declared. A resolution declared
# too high cannot be told from a child's finger, and is not checked.
_MAX_RIDGE_PERIOD = 12.0
# below this ridge clarity there is no ridge flow at all (white noise: 0.004; the poorest of
# the FVC2004 B images: 0.010)
_MIN_CLARITY = 0.007
_SIZE_STEP = 64  # the network's input is padded to multiples of this (fewer shapes to compile)

# one lock each: a quality check need not wait while another thread loads the network
_network_lock = threading.Lock()
_nfiq2_lock = threading.Lock()
_network_fn: Callable[[np.ndarray], np.ndarray] | None = None
_nfiq2: Any = None


def _prepare(image: np.ndarray, dpi: int, settings: ExtractionSettings) -> np.ndarray:
    """A 500-dpi, 8-bit grey-scale copy of ``image`` (or a clear FingerprintError)."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise FingerprintError("image must be a 2-D grey-scale array", "bad_image")
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise FingerprintError("image must be grey-scale or RGB", "bad_image")
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    if image.dtype == np.uint16:
        # scaled from the bit depth the data really has (12-bit readers store 0-4095 in 16
        # bits: dropping the low byte left a blank image)
        shift = max(0, int(image.max()).bit_length() - 8)
        image = np.right_shift(image, shift).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FingerprintError(f"unsupported pixel type {image.dtype}", "bad_image")
    if dpi != DPI:
        if settings.on_other_dpi == "refuse" or not 250 <= dpi <= 1000:
            raise FingerprintError(f"{dpi} dpi images are not accepted (500 dpi)", "wrong_dpi")
        f = DPI / dpi
        image = cv2.resize(
            image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
        )
    if min(image.shape) < 120:
        raise FingerprintError(f"image {image.shape[1]}x{image.shape[0]} is too small", "too_small")
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class _Ridges:
    period: float  # px: the lower quartile of the windows' ridge periods
    clarity: float  # the median window's share of its spectrum in its strongest frequency
    box: tuple[int, int, int, int]  # y0, y1, x0, x1: the part of the image with ridges


def _ridges(image: np.ndarray) -> _Ridges | None:
    """Ridge period and clarity from the spectra of the 64 x 64 windows inside the finger
    (each window's strongest spatial frequency, weighted by its share of the spectrum); None
    if no window has contrast.

    The period is the windows' lower quartile: blotches in wet prints and creases pull windows
    towards long periods, never shorter ones. On the 320 FVC2004 B images it reads 5.5 - 10.5
    px, and on their copies upsampled 2x 11.0 - 17.8 px. Clarity is 0.010 - 0.036 on those
    images and 0.004 on white noise."""
    img = image.astype(np.float32)
    win, step = 64, 32
    # inside the finger: the window's middle half has ridge contrast (a window across the
    # finger's edge has its strongest frequency in the edge, not the ridges)
    mean = cv2.boxFilter(img, -1, (16, 16))
    contrast = np.sqrt(np.maximum(cv2.boxFilter(img * img, -1, (16, 16)) - mean * mean, 0))
    floor = max(4.0, 0.3 * float(np.percentile(contrast, 90)))
    ridged = cv2.erode((contrast > floor).astype(np.uint8), np.ones((32, 32), np.uint8))
    hann = np.outer(np.hanning(win), np.hanning(win)).astype(np.float32)
    fy, fx = np.meshgrid(np.fft.fftfreq(win), np.fft.rfftfreq(win), indexing="ij")
    radius = np.hypot(fx, fy)
    band = (radius >= 1 / 32) & (radius <= 1 / 3)
    periods, shares = [], []
    for y in range(win // 2, img.shape[0] - win // 2 + 1, step):
        for x in range(win // 2, img.shape[1] - win // 2 + 1, step):
            if not ridged[y, x]:
                continue
            w = img[y - win // 2 : y + win // 2, x - win // 2 : x + win // 2]
            # weighted by sqrt(frequency): blotches (wet prints, creases) spread their energy
            # over the low frequencies, where it would drown the ridges' sharp peak
            spectrum = np.abs(np.fft.rfft2((w - w.mean()) * hann)) * np.sqrt(radius)
            spectrum[~band] = 0.0
            peak = int(spectrum.argmax())
            periods.append(1.0 / float(radius.flat[peak]))
            shares.append(float(spectrum.flat[peak] / (spectrum.sum() + 1e-6)))
    if not periods:
        return None
    order = np.argsort(periods)
    cum = np.cumsum(np.asarray(shares)[order])
    period = float(np.asarray(periods)[order][np.searchsorted(cum, cum[-1] / 4)])
    ys, xs = np.nonzero(ridged)
    m = win  # the windows' reach, and the finger's edge beyond the last ridged window
    box = (
        max(int(ys.min()) - m, 0),
        min(int(ys.max()) + m + 1, img.shape[0]),
        max(int(xs.min()) - m, 0),
        min(int(xs.max()) + m + 1, img.shape[1]),
    )
    return _Ridges(period, float(np.median(shares)), box)


def _ridge_flow(image: np.ndarray) -> _Ridges:
    """The image's ridges, or FingerprintError ``no_fingerprint`` for a blank image or one
    without ridge flow."""
    if float(image.std()) < 4.0:
        raise FingerprintError("the image is blank", "no_fingerprint")
    ridges = _ridges(image)
    if ridges is None or ridges.clarity < _MIN_CLARITY:
        raise FingerprintError("no ridges found", "no_fingerprint")
    return ridges


def _compile_cache() -> str:
    """Where XLA's compiled programs are kept between processes: ``JAX_COMPILATION_CACHE_DIR``
    if set, else this user's cache folder (private to the user: compiled code is run)."""
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnp", "jax"
    )
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _network() -> Callable[[np.ndarray], np.ndarray]:
    """LEADER, loaded once per process from the weights inside pyfing. Its compiled programs
    are kept on disk (``_compile_cache``): a new process (a restarted worker, each extraction
    process) loads them in seconds instead of compiling for a minute."""
    global _network_fn
    with _network_lock:
        if _network_fn is None:
            os.environ.setdefault("KERAS_BACKEND", "jax")
            import keras

            if keras.backend.backend() == "jax":
                import jax

                # every program, the model's small set-up ones too (together most of the time)
                config: Any = jax.config
                if not config.jax_compilation_cache_dir:
                    config.update("jax_compilation_cache_dir", _compile_cache())
                config.update("jax_persistent_cache_min_compile_time_secs", 0)
                config.update("jax_persistent_cache_min_entry_size_bytes", 0)
            from pyfing.minutiae_end_to_end import Leader

            model = Leader().model
            if keras.backend.backend() == "jax":
                import jax

                trainable = [v.value for v in model.trainable_variables]
                fixed = [v.value for v in model.non_trainable_variables]
                run = jax.jit(
                    lambda x: model.stateless_call(trainable, fixed, x, training=False)[0]
                )
                _network_fn = lambda x: np.asarray(run(x))  # noqa: E731
            else:
                _network_fn = lambda x: keras.ops.convert_to_numpy(  # noqa: E731
                    model(x, training=False)
                )
        return _network_fn


def _span(lo: int, hi: int, size: int) -> tuple[int, int, int, int]:
    """Along one axis: (start, length) of the image part fed to the network, the padding
    before it, and the network's input length (a multiple of _SIZE_STEP). The part covers
    lo..hi, grown with real image rather than padding where the image has it."""
    n = -(-(hi - lo) // _SIZE_STEP) * _SIZE_STEP
    if n >= size:  # the whole axis, padded on both sides
        n = -(-size // _SIZE_STEP) * _SIZE_STEP
        return 0, size, (n - size) // 2, n
    return min(max((lo + hi - n) // 2, 0), size - n), n, 0, n


def _leader(
    image: np.ndarray, settings: ExtractionSettings, box: tuple[int, int, int, int]
) -> list[Minutia]:
    """LEADER's minutiae in the part of the image that holds the finger (``box``): a reader's
    frame is often mostly background, and the network's time grows with its input's area.
    The whole image when the part would save less than a quarter of the time."""
    h, w = image.shape
    rows, cols = _span(box[0], box[1], h), _span(box[2], box[3], w)
    whole = _span(0, h, h), _span(0, w, w)
    if rows[3] * cols[3] > 0.75 * whole[0][3] * whole[1][3]:
        rows, cols = whole
    (sy, lh, ty, nh), (sx, lw, tx, nw) = rows, cols
    x = np.full((1, nh, nw, 1), float(image[0, 0]), np.float32)
    x[0, ty : ty + lh, tx : tx + lw, 0] = image[sy : sy + lh, sx : sx + lw]
    out = _network()(x)[0, ty : ty + lh, tx : tx + lw]
    # channels: minutia probability, direction, ending-vs-bifurcation, the probability after
    # non-maximum suppression (pyfing takes the last as each minutia's confidence)
    ys, xs = np.nonzero(out[..., 3] >= settings.min_confidence)
    conf = out[ys, xs, 3]
    keep = np.argsort(-conf, kind="stable")[: settings.max_minutiae]
    return [
        Minutia(
            int(xs[i]) + sx,
            int(ys[i]) + sy,
            # LEADER's direction is ISO's: counter-clockwise from the x axis, y down
            float(out[ys[i], xs[i], 1] % (2 * math.pi)),
            "ending" if out[ys[i], xs[i], 2] >= 0.5 else "bifurcation",
            max(1, min(100, round(float(conf[i]) * 100))),
        )
        for i in sorted(keep, key=lambda k: (ys[k], xs[k]))
    ]


def _nfiq2_score(image: np.ndarray) -> int:
    """NIST NFIQ 2 (0-100) of a 500-dpi grey-scale image; 0 when it finds no fingerprint."""
    global _nfiq2
    import nbis

    ok, bmp = cv2.imencode(".bmp", image)
    if not ok:
        return 0
    with _nfiq2_lock:  # one extractor per process; the native library is not documented thread-safe
        if _nfiq2 is None:
            _nfiq2 = nbis.new_nbis_extractor(
                nbis.NbisExtractorSettings(
                    min_quality=0.0,
                    get_center=False,
                    check_fingerprint=False,
                    compute_nfiq2=True,
                    ppi=float(DPI),
                )
            )
        try:
            result = _nfiq2.extract_minutiae(bmp.tobytes()).quality()
        except nbis.NbisError:
            return 0
    return int(result.score) if result is not None else 0


def extract(
    image: np.ndarray,
    dpi: int = DPI,
    position: int = 0,
    settings: ExtractionSettings = DEFAULT_SETTINGS,
) -> FingerprintTemplate:
    """Minutiae template of one finger image (deterministic), with its NFIQ 2 quality.

    Quality never stops extraction: a poor print that has minutiae gets a template with a low
    ``quality``, and the caller decides whether to ask for another capture.
    Raises FingerprintError (``bad_image``, ``wrong_dpi``, ``too_small``, ``no_fingerprint``).
    """
    image = _prepare(image, dpi, settings)
    ridges = _ridge_flow(image)
    if ridges.period > _MAX_RIDGE_PERIOD:
        raise FingerprintError(
            f"the ridges are {ridges.period:.1f} px apart at the declared {dpi} dpi: the image's "
            "resolution is higher than declared",
            "wrong_dpi",
        )
    minutiae = _leader(image, settings, ridges.box)
    if len(minutiae) < settings.min_minutiae:
        raise FingerprintError(f"only {len(minutiae)} minutiae found", "no_fingerprint")
    h, w = image.shape
    return FingerprintTemplate(w, h, tuple(minutiae), DPI, _nfiq2_score(image), position)


def quality(
    image: np.ndarray, dpi: int = DPI, settings: ExtractionSettings = DEFAULT_SETTINGS
) -> int:
    """NFIQ 2 quality, 0-100 (higher predicts better matching; 0: no usable fingerprint).
    Images at other resolutions are resampled to 500 dpi first, as NFIQ 2 requires."""
    try:
        image = _prepare(image, dpi, settings)
        _ridge_flow(image)  # NFIQ 2 itself gives white noise 33
    except FingerprintError:
        return 0
    return _nfiq2_score(image)
