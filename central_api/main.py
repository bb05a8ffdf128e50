"""The FastAPI application of the central registry."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central_api.config import Settings, get_settings
from central_api.crypto import FieldCipher
from central_api.db import ensure_migrated, make_engine, make_session_factory
from central_api.dedup.service import Deduplicator
from central_api.enrolment.router import router as enrolment_router
from central_api.identity.models import Person

log = logging.getLogger("central_api")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        payload = json.dumps(
            {"detail": f"request body exceeds the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Raises ConfigError (no key) or DatabaseNotMigrated, with a clear message."""
    settings = settings or get_settings()
    cipher = FieldCipher(settings.key_bytes())
    packet_key = settings.packet_private_key()
    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
    except Exception:
        engine.dispose()
        raise
    sessions = make_session_factory(engine)
    dedup = Deduplicator(sessions, cipher, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dedup.load()
        stop = threading.Event()
        worker = None
        if settings.start_worker:
            worker = threading.Thread(target=dedup.run, args=(stop,), name="dedup", daemon=True)
            worker.start()
        try:
            yield
        finally:
            stop.set()
            dedup.wake()
            if worker is not None:
                worker.join(timeout=30)
            engine.dispose()

    app = FastAPI(
        title="RNP central registry",
        version="0.1.0",
        summary="Enrolment intake, 1:N deduplication and IDCS issuance",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.cipher = cipher
    app.state.packet_key = packet_key
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.dedup = dedup
    app.include_router(enrolment_router)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the rule, but never echo the offending input back: it may be
        # personal or biometric data, and NaN/Infinity inputs are not even valid JSON.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.get("/v1/health", tags=["ops"])
    def health(request: Request) -> dict[str, object]:
        """Liveness and a few gauges (no personal data)."""
        with sessions() as s:
            s.execute(text("SELECT 1"))
            persons = s.scalar(select(func.count()).select_from(Person))
            queued = dedup.queue_depth(s)
        return {
            "status": "ok",
            "persons": persons,
            "gallery_references": len(dedup.gallery),
            "queued": queued,
        }

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
