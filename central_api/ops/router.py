"""Health (public: up or down) and metrics (bearer token, Prometheus text format)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from central_api.dependencies import RegistryDep
from central_api.exceptions import NotFound
from central_api.ops.service import render

router = APIRouter(prefix="/v1", tags=["ops"])


@router.get("/health")
def health(reg: RegistryDep) -> JSONResponse:
    """Up or down, nothing more: counts and queue depth are metrics."""
    try:
        with reg.sessions() as s:
            s.execute(text("SELECT 1"))
    except Exception:  # any database failure means down; the log has the details
        return JSONResponse({"status": "down"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(
    reg: RegistryDep, authorization: Annotated[str | None, Header()] = None
) -> PlainTextResponse:
    """Gauges and counters for monitoring (``Authorization: Bearer <CENTRAL_METRICS_TOKEN>``);
    404 when no token is configured or the token is wrong."""
    token = reg.settings.metrics_bearer()
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        raise NotFound("not found")

    def page() -> str:
        with reg.sessions() as s:
            return render(
                s, reg.queue, reg.intake_answers, reg.dedup.service.persons, reg.slots.in_flight
            )

    return PlainTextResponse(await run_in_threadpool(page), media_type="text/plain; version=0.0.4")
