"""The citizen's kiosk UI: FastAPI + Jinja2 pages on 127.0.0.1, one enrolment at a time.

Every page is server-rendered and works with plain form posts (post → redirect → get), so a
click can never leave the session half-changed; a small script adds live feedback (server-sent
events fed by the device daemon's PUB socket), the receipt's status updates, spoken prompts
and the idle-timeout return. Texts come from the message catalogues in ``kiosk/locales``
(Arabic right-to-left, French, Tamazight in Tifinagh, English), never from code.

Who may drive it (:class:`Guard`): only requests naming a loopback host (``Host``; a web page
elsewhere cannot reach it by DNS rebinding); the enrolment session belongs to the browser that
started it (a cookie: another browser or local process sees "in use" and nothing of it, and
may take the kiosk over only once it is back at the welcome screen); every POST carries a token
bound to that cookie and, when the browser sends one, a same-origin ``Origin``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, cast
from zoneinfo import ZoneInfo

import segno
import zmq
import zmq.asyncio
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from biometrics.fingerprint import FingerPosition
from central_api.enrolment.schemas import RevealRequest
from devices.bus import DeviceClient
from kiosk import household, technician, voice
from kiosk.client import CentralClient, KioskIdentity
from kiosk.household import HouseholdDesk
from kiosk.outbox import Entry, Outbox, OutboxState, SyncWorker
from kiosk.session import (
    FINGER_ORDER,
    LANGUAGES,
    STEPS,
    EnrolmentSession,
    KioskSettings,
    Operators,
    Problem,
    Step,
    StepError,
    display_date,
    registry_errors,
)

_HERE = Path(str(resources.files("kiosk")))
RTL = {"ar"}
LOCAL_TIME = ZoneInfo("Africa/Casablanca")  # receipts and the agent console show local time
# the receipt's look per status: an icon and a colour class (never colour alone)
STATUS_ICONS = {
    "issued": "✅",
    "duplicate": "🔁",
    "adjudication": "⚖️",
    "queued": "📨",
    "refused": "⛔",
    "rejected": "⛔",
    "more_information": "📝",
}


@cache
def catalogue(language: str) -> dict[str, str]:
    """The message catalogue of ``language`` (falls back to French for missing keys)."""
    base = json.loads((_HERE / "locales" / "fr.json").read_text(encoding="utf-8"))
    if language != "fr":
        base.update(
            json.loads((_HERE / "locales" / f"{language}.json").read_text(encoding="utf-8"))
        )
    return base


def translator(language: str):
    """``t(key, **values)`` for templates: the catalogue entry, formatted; the key itself when
    missing (visible in tests, never a crash in front of a citizen)."""
    cat = catalogue(language)

    def t(key: str, **values: object) -> str:
        text = cat.get(key)
        if text is None:  # an unforeseen error code still gets a sentence and a next step
            prefix = key.split(".", 1)[0]
            text = cat.get(f"{prefix}.generic", key) if prefix in ("error", "next") else key
        return text.format(**values) if values else text

    return t


@dataclass
class Kiosk:
    """Everything the UI drives."""

    session: EnrolmentSession
    outbox: Outbox
    worker: SyncWorker | None
    devices: DeviceClient
    desk: HouseholdDesk | None = None  # the household (RSU) desk; None: not offered


class _DaemonWatch:
    """Tracks the device daemon's heartbeat, so pages can say when devices are gone."""

    def __init__(self, devices: DeviceClient) -> None:
        self.devices = devices
        self.last_beat = 0.0
        self.lost: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="daemon-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < 3.5

    def _run(self) -> None:
        with self.devices.subscribe("daemon.heartbeat") as events:
            while not self._stop.is_set():
                ev = events.next(0.5)
                if ev is not None:
                    self.last_beat = time.monotonic()
                    devs = cast(list[dict[str, object]], ev[1].get("devices") or [])
                    self.lost = {str(d["kind"]) for d in devs if d.get("state") != "ok"}


COOKIE = "kiosk_session"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]"})


def _host(value: str) -> str:
    """The host part of a ``Host`` header value (without the port)."""
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Binds the one enrolment session to the browser that holds it, and its POSTs to that
    browser's pages (the cookie and a token derived from it)."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)
        self.owner: str | None = None
        self._lock = threading.Lock()

    def token(self, sid: str) -> str:
        """The same-origin token of the pages served to ``sid``'s browser."""
        return hmac.new(self._secret, sid.encode(), hashlib.sha256).hexdigest()

    def owns(self, sid: str | None) -> bool:
        """True if ``sid`` is the browser holding the session."""
        owner = self.owner
        return sid is not None and owner is not None and hmac.compare_digest(sid, owner)

    def claim(self) -> str:
        """A new browser takes the kiosk (only when the session is free)."""
        with self._lock:
            self.owner = secrets.token_urlsafe(32)
            return self.owner


def create_app(kiosk: Kiosk) -> FastAPI:
    """The kiosk UI application."""
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"]),
    )
    watch = _DaemonWatch(kiosk.devices)
    session, desk = kiosk.session, kiosk.desk
    guard = Guard()
    agent_notice: list[str] = []  # the agent screen's last result (one at a time)
    revealed: list[str] = []  # the IDCS last shown to a duplicate citizen (one screen view)

    def holder(request: Request) -> str:
        """Dependency of every route that shows or changes the session: the browser must
        hold it."""
        sid = request.cookies.get(COOKIE)
        if not guard.owns(sid):
            raise HTTPException(403, "this kiosk is in use by another screen")
        return str(sid)

    async def same_origin(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        sid: str = Depends(holder),  # (not Annotated: ``holder`` is local to this app)
    ) -> None:
        """Dependency of every POST: the form's token and the browser's Origin."""
        origin = request.headers.get("origin")
        if origin is not None:
            scheme, _, host = origin.partition("://")
            if scheme != "http" or _host(host) not in LOOPBACK:
                raise HTTPException(403, "cross-origin request refused")
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            raise HTTPException(403, "cross-site request refused")
        if not hmac.compare_digest(csrf.encode(), guard.token(sid).encode()):
            raise HTTPException(403, "the page has expired: reload it")

    posting = Depends(same_origin)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watch.start()
        stop = asyncio.Event()

        async def reaper() -> None:  # idle sessions are wiped even if nobody clicks
            while not stop.is_set():
                await asyncio.to_thread(session.expire_if_idle)
                if desk is not None:
                    await asyncio.to_thread(desk.expire_if_idle)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)

        task = asyncio.create_task(reaper())
        yield
        stop.set()
        await task
        watch.stop()

    app = FastAPI(
        title="Enrolment kiosk",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")

    @app.middleware("http")
    async def loopback_only(request: Request, call_next):
        if _host(request.headers.get("host", "")) not in LOOPBACK:
            return PlainTextResponse("this kiosk answers on 127.0.0.1 only", status_code=400)
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"  # (no-referrer makes Origin "null")
        return response

    def page(name: str, sid: str, **ctx: object) -> HTMLResponse:
        lang = session.language
        t = translator(lang)

        def voice_url(key: str) -> str:
            """The pre-rendered spoken version of message ``key`` ("" if none was built)."""
            return f"/static/voice/{lang}/{key}.wav" if voice.exists(lang, key) else ""

        body = env.get_template(name).render(
            csrf=guard.token(sid),
            t=t,
            lang=lang,
            dir="rtl" if lang in RTL else "ltr",
            step=session.step.value,
            error=session.last_error,
            session_id=session.session_id,
            languages=LANGUAGES,
            daemon_alive=watch.alive,
            devices_lost=sorted(watch.lost),
            online=kiosk.worker.online if kiosk.worker else None,
            idle_timeout=session.settings.idle_timeout,
            step_number=session.step.number,
            steps=STEPS,
            shift=session.on_duty,
            voice=voice_url,
            client_strings={
                k: v
                for k, v in catalogue(lang).items()
                if k.startswith(("feedback.", "live.", "idle."))
            },
            **ctx,
        )
        return HTMLResponse(body)

    def back() -> RedirectResponse:
        return RedirectResponse("/", status_code=303)

    async def act(fn, *args, **kw) -> RedirectResponse:
        with suppress(StepError):  # session.last_error holds the code; the page shows it
            await asyncio.to_thread(fn, *args, **kw)
        return back()

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        """The current step's page (the kiosk is taken over by this browser if it is free)."""
        claimed = None
        if not guard.owns(request.cookies.get(COOKIE)):
            if session.step != Step.WELCOME:
                body = translator(session.language)("kiosk.in_use")
                return HTMLResponse(
                    f"<!doctype html><meta charset=utf-8><title>⏳</title><p>{body}</p>",
                    status_code=409,
                )
            claimed = guard.claim()
        response = _index(claimed or str(request.cookies.get(COOKIE)))
        if claimed is not None:
            response.set_cookie(COOKIE, claimed, httponly=True, samesite="strict", path="/")
        return response

    def _index(sid: str) -> HTMLResponse:
        ctx: dict[str, object] = {"photos": sorted(session.photos())}
        if session.step == Step.WELCOME:
            ctx["welcome"] = [(lang, translator(lang)("welcome.text")) for lang in LANGUAGES]
        elif session.step == Step.DOCUMENT:
            ctx["typed"] = session.data.typed
        elif session.step == Step.FACE:
            d = session.data
            ctx["face_failures"] = d.face_failures
            ctx["face_attempts"] = session.settings.face_attempts
            ctx["face_candidate"] = d.face_candidate is not None
        elif session.step == Step.FINGERS:
            d = session.data
            ctx["fingers"] = [
                {
                    "position": p,
                    "name": FingerPosition(p).name.lower(),
                    "state": "done"
                    if p in d.fingers
                    else "exception"
                    if p in d.exceptions
                    else "todo",
                    "attempts": d.attempts.get(p, 0),
                }
                for p in FINGER_ORDER
            ]
            nxt = session.next_finger
            ctx["current"] = nxt
            ctx["next_finger"] = FingerPosition(nxt).name.lower() if nxt else None
            ctx["attempt"] = d.attempts.get(nxt, 0) if nxt else 0
        elif session.step == Step.REVIEW:
            review = session.review()
            review["date_of_birth"] = display_date(review.get("date_of_birth"))
            ctx["review"] = review
        elif session.step == Step.RECEIPT and session.receipt is not None:
            ctx["receipt"] = _receipt_context(kiosk, session.receipt)
        return page("kiosk.html", sid, **ctx)

    @app.get("/state", dependencies=[Depends(holder)])
    def state() -> dict[str, object]:
        """Where the session is (the page reloads when this changes)."""
        return {
            "step": session.step.value,
            "session_id": session.session_id,
            "daemon_alive": watch.alive,
            "devices_lost": sorted(watch.lost),
        }

    @app.post("/start", dependencies=[posting])
    async def start(language: Annotated[str, Form()] = "") -> RedirectResponse:
        """The welcome screen: start (in ``language`` when one of its buttons was touched)."""

        def begin() -> None:
            if desk is not None:
                desk.wipe()  # whoever was at the household desk has gone
            session.start()
            if language:
                session.choose_language(language)

        return await act(begin)

    @app.post("/language", dependencies=[posting])
    async def language(
        language: Annotated[str, Form()], then: Annotated[str, Form()] = "/"
    ) -> RedirectResponse:
        """The language step's choice, or the switch on any other page (the step stays)."""
        if session.step in (Step.LANGUAGE,):
            return await act(session.choose_language, language)
        await act(session.set_language, language)
        return RedirectResponse(then if then in ("/lookup", "/household") else "/", status_code=303)

    @app.post("/cancel", dependencies=[posting])
    async def cancel() -> RedirectResponse:
        return await act(session.cancel)

    @app.post("/back", dependencies=[posting])
    async def go_back() -> RedirectResponse:
        return await act(session.back)

    @app.post("/touch", dependencies=[posting], status_code=204)
    def touch() -> Response:
        """The citizen is still there (typing, or "I am here" at the idle warning)."""
        session.touch()
        if desk is not None:
            desk.touch()
        return Response(status_code=204)

    @app.get("/photo/{which}", dependencies=[Depends(holder)])
    def photo(which: Literal["capture", "chip", "candidate"]) -> Response:
        """The citizen's capture or their chip's photo, for this enrolment's screen only
        (never cached, gone with the session)."""
        image = session.photos().get(which)
        if image is None:
            raise HTTPException(404, "no such photo in this enrolment")
        return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/document/scan", dependencies=[posting])
    async def scan_document() -> RedirectResponse:
        return await act(session.scan_document)

    @app.post("/document/card", dependencies=[posting])
    async def read_card(
        number: Annotated[str, Form()],
        birth: Annotated[str, Form()],
        expiry: Annotated[str, Form()],
    ) -> RedirectResponse:
        return await act(session.read_card, number, birth, expiry)

    @app.post("/document/can", dependencies=[posting])
    async def read_card_can(can: Annotated[str, Form()]) -> RedirectResponse:
        return await act(session.read_card_can, can)

    @app.post("/document/none", dependencies=[posting])
    async def no_document(
        kind: Annotated[str, Form()],
        surname_latin: Annotated[str, Form()],
        given_names_latin: Annotated[str, Form()],
        date_of_birth: Annotated[str, Form()],
        sex: Annotated[str, Form()],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
        nationality: Annotated[str, Form()] = "MAR",
        birth_certificate: Annotated[str, Form()] = "",
        witness1: Annotated[str, Form()] = "",
        witness2: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        if kind not in ("birth_certificate", "witnesses"):
            raise HTTPException(422, "kind must be birth_certificate or witnesses")
        fields = {
            "surname_latin": surname_latin,
            "given_names_latin": given_names_latin,
            "date_of_birth": date_of_birth,
            "sex": sex,
            "nationality": nationality,
        }
        return await act(
            session.no_document,
            kind,
            fields,
            operator_id,
            pin,
            note or kind,
            birth_certificate=birth_certificate,
            witnesses=[witness1, witness2],
        )

    @app.post("/face/capture", dependencies=[posting])
    async def capture_face() -> RedirectResponse:
        return await act(session.capture_face)

    @app.post("/face/override", dependencies=[posting])
    async def face_override(
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        return await act(session.accept_face_mismatch, operator_id, pin, note or "confirmed")

    @app.post("/face/supervisor", dependencies=[posting])
    async def face_supervisor(
        decision: Annotated[Literal["accept", "retry"], Form()],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
        note: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        """After the failed attempts: the supervisor accepts the best capture, or allows more
        tries (each recorded in the packet)."""
        if decision == "accept":
            return await act(session.waive_face, operator_id, pin, note or "accepted")
        return await act(session.allow_face_retry, operator_id, pin, note or "retry")

    @app.post("/fingers/capture", dependencies=[posting])
    async def capture_finger() -> RedirectResponse:
        return await act(session.capture_finger)

    @app.post("/fingers/exception", dependencies=[posting])
    async def finger_exception(
        reason: Annotated[str, Form()],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        return await act(session.finger_exception, reason, operator_id, pin)

    @app.post("/review/submit", dependencies=[posting])
    async def submit(
        address: Annotated[str, Form()] = "",
        place_of_birth: Annotated[str, Form()] = "",
        surname_arabic: Annotated[str, Form()] = "",
        given_names_arabic: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        return await act(
            session.submit, address, place_of_birth, surname_arabic, given_names_arabic
        )

    @app.get("/receipt/{packet_id}", response_class=HTMLResponse)
    def receipt(
        packet_id: uuid.UUID,
        paper: Literal["80mm", "a4"] = "80mm",
        sid: str = Depends(holder),
    ) -> HTMLResponse:
        """The printable receipt (80 mm thermal roll or A4): the citizen's own while it is on
        screen, any of this kiosk's for the agent on duty (a reprint)."""
        entry = kiosk.outbox.get(packet_id)
        own = session.receipt is not None and session.receipt.packet_id == packet_id
        if entry is None or not (own or session.on_duty is not None):
            raise HTTPException(404, "no such receipt on this screen")
        return page(
            "receipt.html",
            sid,
            receipt=_receipt_context(kiosk, entry),
            printable=True,
            paper=paper,
        )

    @app.get("/receipt/{packet_id}/status", dependencies=[Depends(holder)])
    def receipt_status(packet_id: uuid.UUID) -> JSONResponse:
        """The receipt's live fields (for the page's updates)."""
        entry = kiosk.outbox.get(packet_id)
        if entry is None:
            raise HTTPException(404, "no such receipt at this kiosk")
        t = translator(session.language)
        ctx = _receipt_context(kiosk, entry)
        return JSONResponse(
            {
                "state": entry.state,
                "status": entry.status,
                "status_key": ctx["status_key"],
                "icon": ctx["icon"],
                "message": t(f"receipt.status.{ctx['status_key']}"),
                "idcs": entry.idcs,
                "qr": ctx["qr"],
            }
        )

    @app.get("/events", dependencies=[Depends(holder)])
    async def events() -> StreamingResponse:
        """Server-sent events: the device daemon's live feedback, progress and health."""

        async def stream() -> AsyncIterator[bytes]:
            ctx = zmq.asyncio.Context.instance()
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            for topic in ("face.", "finger.", "card.", "device."):
                sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
            sub.connect(kiosk.devices.events_endpoint)
            try:
                yield b"retry: 2000\n\n"
                while True:
                    if await sub.poll(15000):
                        name, body = (bytes(f) for f in await sub.recv_multipart())
                        data = json.dumps({"topic": name.decode(), **json.loads(body)})
                        yield f"event: device\ndata: {data}\n\n".encode()
                    else:
                        yield b": keep-alive\n\n"
            finally:
                sub.close()

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/agent", response_class=HTMLResponse)
    def agent(sid: str = Depends(holder)) -> HTMLResponse:
        """The agent console (behind the shift sign-in): the outbox, sync and devices, today's
        work per agent, the operators, requeueing refused packets, lifting lockouts,
        showing a duplicate citizen their IDCS."""
        notice = agent_notice[-1] if agent_notice else None
        if session.on_duty is None:
            del agent_notice[:]
            return page("agent.html", sid, signin=True, notice=notice, printable=True)
        worker = kiosk.worker
        # a revealed IDCS is shown once: the next view of the agent screen no longer has it
        notice = agent_notice[-1] if agent_notice else None
        idcs = revealed.pop() if revealed else None
        if notice == "agent.revealed" and idcs is None:
            notice = None
        listing = kiosk.outbox.listing(200)
        entries = [
            {
                "packet_id": str(e.packet_id),
                "receipt_number": e.receipt_number,
                "created": e.created_at.astimezone(LOCAL_TIME).strftime("%d/%m/%Y %H:%M"),
                "state": e.state,
                "status": e.status,
                "problem": (e.last_error or "").split(":", 1)[0] or None,
            }
            for e in listing
        ]
        return page(
            "agent.html",
            sid,
            entries=entries,
            counts=kiosk.outbox.counts(),
            today=[
                {
                    "who": who,
                    "enrolments": work.get("enrolment", 0),
                    "exceptions": work.get("finger_exception", 0),
                    "overrides": sum(
                        n
                        for action, n in work.items()
                        if action not in ("enrolment", "finger_exception", "requeue")
                    ),
                }
                for who, work in kiosk.outbox.today(LOCAL_TIME).items()
            ],
            operators=session.operators.listing(),
            operators_version=session.operators.version,
            last_contact=_local(worker.last_contact) if worker and worker.last_contact else None,
            clock_skew=worker.clock_skew if worker else None,
            notice=notice,
            idcs=idcs,
            printable=True,
        )

    @app.post("/agent/signin", dependencies=[posting])
    def agent_signin(
        operator_id: Annotated[str, Form(max_length=40)], pin: Annotated[str, Form(max_length=12)]
    ) -> RedirectResponse:
        """An agent starts their shift (id + PIN; a badge later)."""

        def sign_in() -> str:
            session.sign_in(operator_id, pin)
            return "agent.signed_in"

        return agent_act(sign_in)

    @app.post("/agent/signout", dependencies=[posting])
    def agent_signout() -> RedirectResponse:
        session.sign_out()
        agent_notice[:] = ["agent.signed_out"]
        return RedirectResponse("/agent", status_code=303)

    def agent_act(fn, *args: object) -> RedirectResponse:
        try:
            agent_notice.append(fn(*args))
        except StepError as exc:
            agent_notice.append(f"error.{exc.code}")
        del agent_notice[:-1]
        return RedirectResponse("/agent", status_code=303)

    @app.post("/agent/reveal", dependencies=[posting])
    def agent_reveal(
        receipt: Annotated[str, Form(max_length=20)],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        """A citizen told "already registered" asks for their IDCS: their live face is sent,
        sealed, about the duplicate receipt; the registry shows it if the face matches."""

        def reveal() -> str:
            entry = next(
                (e for e in kiosk.outbox.by_receipt(receipt) if e.status == "duplicate"), None
            )
            if entry is None:
                raise StepError(Problem.REVEAL_NOT_DUPLICATE)
            operator, shot = session.live_face(operator_id, pin)  # the agent, then the camera
            if kiosk.worker is None:
                raise StepError(Problem.REGISTRY_UNAVAILABLE)
            request = RevealRequest(
                kiosk_id=kiosk.session.settings.kiosk_id,
                packet_id=entry.packet_id,
                face_template=[float(v) for v in shot.template],
                face_liveness=shot.liveness.passed,
                face_quality=shot.quality_score,
                operator_id=operator,
            )
            with registry_errors(not_found=Problem.REVEAL_NOT_DUPLICATE):
                answer = kiosk.worker.client.reveal(request)
            if answer.outcome == "mismatch":
                raise StepError(Problem.REVEAL_MISMATCH)
            if answer.outcome == "refused":
                raise StepError(Problem.REVEAL_REFUSED)
            revealed.append(str(answer.idcs))
            del revealed[:-1]
            return "agent.revealed"

        return agent_act(reveal)

    @app.post("/agent/requeue", dependencies=[posting])
    def agent_requeue(
        reason: Annotated[str, Form(min_length=3, max_length=200)],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        """Refused packets go back to the queue (a supervisor, with a reason)."""

        def requeue() -> str:
            who, _ = session.authority(operator_id, pin, "supervisor")
            kiosk.outbox.requeue(by=who, reason=reason)
            if kiosk.worker is not None:
                kiosk.worker.wake()
            return "agent.requeued"

        return agent_act(requeue)

    @app.post("/agent/unlock", dependencies=[posting])
    def agent_unlock(
        locked_id: Annotated[str, Form()],
        operator_id: Annotated[str, Form()] = "",
        pin: Annotated[str, Form()] = "",
    ) -> RedirectResponse:
        def unlock() -> str:
            if session.operators.role_of(locked_id) is None:
                raise StepError(Problem.OPERATOR_UNKNOWN)
            session.authority(operator_id, pin, "supervisor")
            session.operators.unlock(locked_id)
            return "agent.unlocked"

        return agent_act(unlock)

    @app.get("/lookup", response_class=HTMLResponse)
    def lookup_page(sid: str = Depends(holder)) -> HTMLResponse:
        """Check a receipt (queued, in adjudication...) by its number and the date of birth."""
        return page(
            "lookup.html",
            sid,
            answer=None,
            problem=None,
            icons=STATUS_ICONS,
            lookup=True,
            voice_key="step.lookup",
        )

    @app.post("/lookup", response_class=HTMLResponse, dependencies=[posting])
    def lookup(
        receipt: Annotated[str, Form(max_length=24)],
        birth: Annotated[str, Form(max_length=12)],
        sid: str = Depends(holder),
    ) -> HTMLResponse:
        """The registry's answer, shown on this page once (nothing is kept)."""
        try:
            answer, problem = session.check_receipt(receipt, birth), None
        except StepError as exc:
            answer, problem = None, str(exc.code)
        return page(
            "lookup.html",
            sid,
            answer=answer,
            problem=problem,
            icons=STATUS_ICONS,
            lookup=True,
            voice_key="step.lookup",
        )

    technician.add_routes(app, session, page, holder, posting)
    if desk is not None:
        household.add_routes(app, desk, page, holder, posting)

    @app.get("/health")
    def health() -> dict[str, object]:
        """Kiosk health for technicians: devices, outbox, registry reachability."""
        return {
            "daemon_alive": watch.alive,
            "devices_lost": sorted(watch.lost),
            "outbox": kiosk.outbox.counts(),
            "registry_online": kiosk.worker.online if kiosk.worker else None,
        }

    return app


def _receipt_context(kiosk: Kiosk, entry: Entry) -> dict[str, object]:
    status_key = (
        entry.status
        if entry.state in (OutboxState.ACKED, OutboxState.FINAL) and entry.status
        else (OutboxState.REFUSED if entry.state == OutboxState.REFUSED else OutboxState.QUEUED)
    )
    payload = {
        "receipt": entry.receipt_number,
        "pid": str(entry.packet_id),
        "kiosk": kiosk.session.settings.kiosk_id,
        "date": entry.created_at.date().isoformat(),
    }
    if entry.idcs:
        payload["idcs"] = entry.idcs
    qr = segno.make(json.dumps(payload, separators=(",", ":")), error="m")
    return {
        "packet_id": str(entry.packet_id),
        "receipt_number": entry.receipt_number,
        "date": _local(entry.created_at),
        "icon": STATUS_ICONS.get(status_key, "🧾"),
        "centre": kiosk.session.settings.centre,
        "kiosk_id": kiosk.session.settings.kiosk_id,
        "state": entry.state,
        "status_key": status_key,
        "idcs": entry.idcs,
        "qr": qr.svg_inline(scale=4, title="QR"),
        "now": datetime.now(UTC).isoformat(),
    }


def _local(at: datetime) -> str:
    """A time as the citizen reads it: Moroccan local time, DD/MM/YYYY HH:MM."""
    return at.astimezone(LOCAL_TIME).strftime("%d/%m/%Y %H:%M")


def assemble(
    settings: KioskSettings,
    data_dir: Path,
    central_url: str,
    registry_keys: tuple[bytes, bytes],
    identity: KioskIdentity,
    devices: DeviceClient,
    operators: Operators,
) -> Kiosk:
    """Wire a kiosk: outbox (encrypted, in ``data_dir``), sync worker, session.
    ``registry_keys``: the registry's packet key (sealed to) and signing key (verified)."""
    outbox = Outbox(data_dir / "outbox.db", Outbox.load_key(data_dir / "outbox.key"))
    client = CentralClient(central_url, identity, *registry_keys, timeout=15.0, retries=0)
    operators.kiosk_id = settings.kiosk_id
    worker = SyncWorker(
        outbox, client, refresh=lambda: operators.sync(client, registry_keys[1])
    ).start()
    session = EnrolmentSession(
        settings, devices, outbox, operators, on_submitted=lambda _e: worker.wake()
    )
    session.ask = client.ask
    return Kiosk(session, outbox, worker, devices, HouseholdDesk(session, client.rsu))


def browser_command(url: str = "http://127.0.0.1:8080", chromium: str = "chromium") -> list[str]:
    """The kiosk screen's browser: Chromium full screen, printing straight to the default
    printer (``--kiosk-printing``: no dialog, no preview tab), spoken guidance that plays
    without a tap, and a fresh incognito profile each start, so nothing of one citizen's
    session (history, cache, a printable tab) outlives the screen."""
    return [
        chromium,
        "--kiosk",
        "--kiosk-printing",
        "--autoplay-policy=no-user-gesture-required",
        "--incognito",
        "--noerrdialogs",
        "--disable-translate",
        "--no-first-run",
        "--disable-pinch",
        "--overscroll-history-navigation=0",
        url,
    ]


def serve_ui(kiosk: Kiosk, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve the UI until interrupted."""
    import uvicorn

    uvicorn.run(create_app(kiosk), host=host, port=port, log_level="warning")
