"""The technician page (``/technician``): devices, test captures, calibration, firmware.

Behind its own sign-in (a kiosk operator whose role is ``technician``: their PIN opens this
page and nothing of an enrolment; it signs them out after a quarter of an hour left alone).
Everything it shows comes from the device daemon (:mod:`devices.daemon`), which owns the
hardware and keeps the device history and firmware configurations; test captures are shown
once and kept nowhere (a technician tests with their own face and finger, or a test finger).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Form, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from biometrics import fingerprint
from devices.bus import DaemonUnavailable, Reply
from devices.exceptions import DeviceError
from devices.fingerprint import POSITIONS
from kiosk.session import EnrolmentSession, Problem, StepError

# Calibration procedures the page offers, per device (the daemon runs and records them)
PROCEDURES = {
    "camera": ("exposure_white_balance", "focus", "uniformity", "geometry"),
    "fingerprint": ("platen", "resolution", "reference_finger"),
    "card_reader": ("apdu_round_trip",),
}
MAX_FIRMWARE_BYTES = 64 * 1024


@dataclass
class _Shown:
    """What the page shows once after a post: a notice, a test capture, a result."""

    notice: str | None = None
    test: dict[str, object] | None = None
    calibration: dict[str, object] | None = None
    diff: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def take(self) -> _Shown:
        """What there is to show, now; the page shows it once, so it is cleared."""
        taken = _Shown(self.notice, self.test, self.calibration, self.diff, self.extra)
        self.notice, self.test, self.calibration, self.diff, self.extra = None, None, None, None, {}
        return taken


def add_routes(
    app: FastAPI,
    session: EnrolmentSession,
    page: Callable[..., HTMLResponse],
    holder: Callable[..., str],
    posting: Any,
) -> None:
    """Add the technician page's routes to the kiosk UI application."""
    devices = session.devices
    shown = _Shown()

    def done(notice: str | None = None, **kw: object) -> RedirectResponse:
        shown.notice = notice
        for k, v in kw.items():
            setattr(shown, k, v)
        return RedirectResponse("/technician", status_code=303)

    def technician() -> str:
        who = session.technician
        if who is None:
            raise StepError(Problem.TECHNICIAN_NEEDED)
        return who.operator_id

    def daemon(cmd: str, args: Mapping[str, object] | None = None, timeout: float = 30.0) -> Reply:
        try:
            return devices.call(cmd, args or {}, timeout=timeout)
        except DaemonUnavailable as exc:
            raise StepError(Problem.DEVICES_UNAVAILABLE, str(exc)) from exc

    def guarded(fn: Callable[[], RedirectResponse]) -> RedirectResponse:
        try:
            return fn()
        except StepError as exc:
            return done(f"error.{exc.code}")
        except DeviceError as exc:
            shown.extra = {"device_error": f"{exc.code}: {exc}"}
            return done("technician.device_error")

    @app.get("/technician", response_class=HTMLResponse)
    def technician_page(sid: str = Depends(holder)) -> HTMLResponse:
        """Devices, their health and history; test captures; calibration; firmware."""
        once = shown.take()
        notice, test, calibration, diff, extra = (
            once.notice,
            once.test,
            once.calibration,
            once.diff,
            once.extra,
        )
        who = session.technician
        if who is None:
            return page(
                "technician.html", sid, signin=True, notice=notice, extra=extra, printable=True
            )
        try:
            status = devices.status(timeout=3.0)
            history = daemon("history", {"limit": 30}).result
            firmware = daemon("firmware.list").result.get("configs", [])
            problem = None
        except (StepError, DeviceError) as exc:
            status, history, firmware = {"devices": []}, {}, []
            problem = getattr(exc, "code", "devices_unavailable")
        return page(
            "technician.html",
            sid,
            technician=who,
            devices=status.get("devices", []),
            card_present=status.get("card_present"),
            events=history.get("events", []),
            calibrations=history.get("calibrations", []),
            firmware=firmware,
            procedures=PROCEDURES,
            positions=POSITIONS,
            notice=notice,
            problem=problem,
            test=test,
            calibration=calibration,
            diff=diff,
            extra=extra,
            printable=True,
        )

    @app.post("/technician/signin", dependencies=[posting])
    def signin(
        operator_id: Annotated[str, Form(max_length=40)], pin: Annotated[str, Form(max_length=12)]
    ) -> RedirectResponse:
        try:
            session.technician_sign_in(operator_id, pin)
        except StepError as exc:
            return done(f"error.{exc.code}")
        return done("technician.signed_in")

    @app.post("/technician/signout", dependencies=[posting])
    def signout() -> RedirectResponse:
        session.technician_sign_out()
        return done("technician.signed_out")

    @app.post("/technician/test/face", dependencies=[posting])
    def test_face() -> RedirectResponse:
        def run() -> RedirectResponse:
            technician()
            r = daemon("face.test", timeout=60.0)
            image = r.arrays()[0]
            test = {"kind": "camera", "image": _jpeg(image), **r.result}
            test.pop("arrays", None)
            return done("technician.tested", test=test)

        return guarded(run)

    @app.post("/technician/test/finger", dependencies=[posting])
    def test_finger(position: Annotated[int, Form(ge=1, le=10)] = 2) -> RedirectResponse:
        def run() -> RedirectResponse:
            technician()
            got = devices.capture_finger(position, timeout=60.0)
            template = fingerprint.extract(got.image, got.dpi, position=position)
            test = {
                "kind": "fingerprint",
                "position": position,
                "image": _jpeg(_minutiae_overlay(got.image, template, got.dpi)),
                "quality": template.quality,
                "minutiae": len(template.minutiae),
                "dpi": got.dpi,
                "model": got.model,
            }
            return done("technician.tested", test=test)

        return guarded(run)

    @app.post("/technician/test/card", dependencies=[posting])
    def test_card() -> RedirectResponse:
        def run() -> RedirectResponse:
            who = technician()
            r = daemon(
                "calibrate",
                {"device": "card_reader", "procedure": "apdu_round_trip", "technician": who},
            )
            return done("technician.tested", test={"kind": "card_reader", **r.result})

        return guarded(run)

    @app.post("/technician/calibrate", dependencies=[posting])
    def calibrate(
        device: Annotated[str, Form(max_length=20)],
        procedure: Annotated[str, Form(max_length=40)],
    ) -> RedirectResponse:
        def run() -> RedirectResponse:
            who = technician()
            if procedure not in PROCEDURES.get(device, ()):
                raise StepError(Problem.WRONG_STEP)
            args = {"device": device, "procedure": procedure, "technician": who}
            r = daemon("calibrate", args, timeout=90.0)
            return done("technician.calibrated", calibration=dict(r.result))

        return guarded(run)

    @app.post("/technician/firmware/diff", dependencies=[posting])
    def firmware_diff(model: Annotated[str, Form(max_length=60)]) -> RedirectResponse:
        def run() -> RedirectResponse:
            technician()
            r = daemon("firmware.diff", {"model": model})
            return done(None, diff=str(r.result.get("diff") or ""))

        return guarded(run)

    @app.post("/technician/firmware/rollback", dependencies=[posting])
    def firmware_rollback(
        model: Annotated[str, Form(max_length=60)],
        why: Annotated[str, Form(min_length=3, max_length=200)],
    ) -> RedirectResponse:
        def run() -> RedirectResponse:
            who = technician()
            daemon("firmware.rollback", {"model": model, "who": who, "why": why})
            return done("technician.firmware_changed")

        return guarded(run)

    @app.post("/technician/firmware/set", dependencies=[posting])
    async def firmware_set(
        config: Annotated[UploadFile, File()],
        why: Annotated[str, Form(min_length=3, max_length=200)],
        signature: Annotated[UploadFile | None, File()] = None,
    ) -> RedirectResponse:
        text = await config.read(MAX_FIRMWARE_BYTES + 1)
        sig = await signature.read(4096) if signature is not None else b""

        def run() -> RedirectResponse:
            who = technician()
            if len(text) > MAX_FIRMWARE_BYTES:
                raise StepError(Problem.WRONG_STEP)
            args: dict[str, object] = {
                "text": text.decode("utf-8", errors="replace"),
                "who": who,
                "why": why,
                "technician_mode": True,  # the technician page is technician mode
            }
            if sig.strip():
                args["signature"] = sig.decode("ascii", errors="replace").strip()
            daemon("firmware.set", args)
            return done("technician.firmware_changed")

        return guarded(run)


def _jpeg(rgb_or_grey: np.ndarray) -> str:
    """A data: URL of the image (shown once on the page, stored nowhere)."""
    image = rgb_or_grey
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    scale = min(1.0, 480 / max(image.shape[:2]))
    if scale < 1.0:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def _minutiae_overlay(
    image: np.ndarray, template: fingerprint.FingerprintTemplate, dpi: int
) -> np.ndarray:
    """The finger image with its minutiae drawn: endings red, bifurcations blue, each with
    its direction (the examiner's usual picture)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if grey.dtype != np.uint8:  # 16-bit readers: stretched to 8 bits for the screen
        span = max(1.0, float(grey.max()) - float(grey.min()))
        grey = ((grey.astype(np.float32) - float(grey.min())) * (255.0 / span)).astype(np.uint8)
    out = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    scale = dpi / template.dpi  # minutiae are in the template's (500 dpi) coordinates
    for m in template.minutiae:
        x, y = round(m.x * scale), round(m.y * scale)
        colour = (220, 30, 30) if m.kind == "ending" else (30, 90, 220)
        tip = (round(x + 12 * np.cos(m.angle)), round(y - 12 * np.sin(m.angle)))
        cv2.circle(out, (x, y), 5, colour, 1, cv2.LINE_AA)
        cv2.line(out, (x, y), tip, colour, 1, cv2.LINE_AA)
    return out
