"""The FastAPI application of the central registry."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response

from central_api.abis.router import router as abis_router
from central_api.abis.service import AbisWorker, make_engine_for, partner_key
from central_api.adjudication.router import router as adjudication_router
from central_api.audit.service import chain_key, checkpoint
from central_api.config import ConfigError, Settings, get_settings
from central_api.console.router import error_page, login_form
from central_api.console.router import router as console_router
from central_api.crypto import FieldCipher
from central_api.db import ensure_migrated, make_engine, make_session_factory, transaction
from central_api.dedup.worker import DedupWorker
from central_api.dependencies import Registry
from central_api.enrolment.gate import BodySlots, IntakeGate, RefusalThrottle
from central_api.enrolment.router import kiosk_router
from central_api.enrolment.router import router as enrolment_router
from central_api.enrolment.schemas import ErrorAnswer, ErrorCode
from central_api.enrolment.service import KioskDirectory
from central_api.exceptions import InternalError, RegistryError
from central_api.operators.exceptions import NotSignedIn, SignInFailed
from central_api.ops.router import router as ops_router
from central_api.ops.service import Counters, QueueGauge
from central_api.rsu.exceptions import RSUError
from central_api.rsu.router import kiosk_router as rsu_kiosk_router
from central_api.rsu.router import router as rsu_router
from central_api.rsu.service import scorer_for

log = logging.getLogger("central_api")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Raises ConfigError (a key missing or unreadable) or DatabaseNotMigrated,
    with a clear message."""
    settings = settings or get_settings()
    data_key = settings.key_bytes()
    cipher = FieldCipher(data_key)
    packet_key = settings.packet_private_key()
    signing_key = settings.signing_private_key()
    settings.metrics_bearer()  # a metrics token file with a loose mode is refused at start
    try:  # the RSU's model and thresholds in force: a wrong file is refused at start
        scorer_for(settings.rsu_model, settings.rsu_thresholds_file)
    except RSUError as exc:
        raise ConfigError(f"CENTRAL_RSU_MODEL / CENTRAL_RSU_THRESHOLDS_FILE: {exc}") from exc
    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
    except Exception:
        engine.dispose()
        raise
    sessions = make_session_factory(engine, data_key)
    dedup = DedupWorker(sessions, cipher, settings)
    abis = (
        AbisWorker(sessions, cipher, settings, None, partner_key(settings))
        if settings.abis_token is not None
        else None
    )
    registry = Registry(
        settings=settings,
        cipher=cipher,
        audit_key=chain_key(data_key),
        console_key=hmac.new(data_key, b"rnp console image links", hashlib.sha256).digest(),
        packet_key=packet_key,
        signing_key=signing_key,
        sessions=sessions,
        dedup=dedup,
        kiosks=KioskDirectory(sessions),
        queue=QueueGauge(sessions, dedup.queue_depth, settings.max_queue_depth),
        slots=BodySlots(settings.max_concurrent_bodies),
        throttle=RefusalThrottle(settings.refusals_per_minute),
        intake_answers=Counters(),
        abis=abis,
    )

    def sign_checkpoint() -> None:
        try:
            with transaction(sessions) as s:
                checkpoint(s, signing_key.sign)
        except Exception:  # the next round tries again; verify reports what is not covered
            log.exception("audit checkpoint failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dedup.service.load()
        stop = threading.Event()
        threads = []
        if settings.start_worker:
            threads.append(threading.Thread(target=dedup.run, args=(stop,), name="dedup"))
        if abis is not None and settings.abis_worker:
            abis.engine = make_engine_for(settings, sessions, cipher)
            threads.append(threading.Thread(target=abis.run, args=(stop,), name="abis"))

        def checkpoints() -> None:
            while not stop.wait(settings.audit_checkpoint_seconds):
                sign_checkpoint()

        threads.append(threading.Thread(target=checkpoints, name="audit-checkpoints"))
        for t in threads:
            t.daemon = True
            t.start()
        try:
            yield
        finally:
            stop.set()
            dedup.wake()
            if abis is not None:
                abis.wake()
            for t in threads:
                t.join(timeout=30)
            dedup.service.close()
            sign_checkpoint()
            engine.dispose()

    docs = settings.expose_docs
    app = FastAPI(
        title="RNP central registry",
        version="0.1.0",
        summary="Enrolment intake, 1:N deduplication and IDCS issuance",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.registry = registry
    app.include_router(enrolment_router)
    app.include_router(kiosk_router)
    app.include_router(ops_router)
    app.include_router(abis_router)
    app.include_router(console_router)
    app.include_router(adjudication_router)
    app.include_router(rsu_router)
    app.include_router(rsu_kiosk_router)

    def console_refused(request: Request, exc: RegistryError) -> Response:
        # the console answers people with pages: sign in again, or what was refused and why
        if isinstance(exc, SignInFailed):
            answer = login_form(registry, error="Wrong account, password or code.")
            answer.status_code = 401
            return answer
        if isinstance(exc, NotSignedIn):
            if request.method == "GET":
                return RedirectResponse("/console/login", status_code=303)
            return error_page(None, 401, str(exc.detail))
        if isinstance(exc, InternalError):
            log.error("console request failed inside the registry: %s", exc)
        return error_page(None, exc.status_code, str(exc.detail))

    @app.exception_handler(RegistryError)
    async def refused(request: Request, exc: RegistryError) -> Response:
        if request.url.path.startswith("/console/"):
            return console_refused(request, exc)
        if isinstance(exc, InternalError):
            log.error("request failed inside the registry: %s", exc)
        registry.intake_answers.add(exc.code.value)
        if exc.sender is not None:
            registry.throttle.record(exc.sender)
        if exc.code == ErrorCode.NOT_AUTHENTICATED and settings.refusal_delay_seconds > 0:
            await asyncio.sleep(settings.refusal_delay_seconds)  # as the gate's tarpit
        return JSONResponse(
            status_code=exc.status_code,
            content=exc.answer().model_dump(mode="json"),
            headers=exc.headers(),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/console/"):
            fields = ", ".join(str(e.get("loc", ("?",))[-1]) for e in exc.errors())
            return error_page(None, 422, f"Missing or invalid: {fields}.")
        # Name the field and the rule, but never echo the offending input back: it may be
        # personal or biometric data, and NaN/Infinity inputs are not even valid JSON.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        body = ErrorAnswer(code=ErrorCode.INVALID_REQUEST, retryable=False, detail=errors)
        return JSONResponse(status_code=422, content=body.model_dump(mode="json"))

    app.add_middleware(
        IntakeGate,
        max_bytes=settings.max_body_bytes,
        slots=registry.slots,
        idle_seconds=settings.body_idle_seconds,
        total_seconds=settings.body_total_seconds,
        kiosks=registry.kiosks,
        queue=registry.queue,
        throttle=registry.throttle,
        refusal_delay=settings.refusal_delay_seconds,
        on_refusal=registry.intake_answers.add,
    )
    return app
