"""The ABIS's HTTP door, for deployments without a broker: the same requests and answers as
on MOSIP's queues, one request per POST (``Authorization: Bearer <CENTRAL_ABIS_TOKEN>``; no
token configured: no door). Insert, identify and delete are queued as from the broker and
answered when done, or with 202 and the request id to ask again under ``GET``."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from central_api.abis.models import AbisJob
from central_api.abis.service import handle
from central_api.db import transaction
from central_api.dependencies import RegistryDep
from central_api.exceptions import NotFound, RegistryError

router = APIRouter(prefix="/abis/v1", tags=["abis"])
MAX_REQUEST_BYTES = 256 * 1024


class TooLarge(RegistryError):
    """An ABIS request over MAX_REQUEST_BYTES."""

    status_code = 413


def _authorise(reg: RegistryDep, authorization: str | None) -> None:
    token = reg.settings.abis_token
    secret = token.get_secret_value() if token is not None else ""
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not secret or reg.abis is None or not hmac.compare_digest(given.encode(), secret.encode()):
        raise NotFound("not found")


def _answer_of(reg: RegistryDep, request_id: str) -> tuple[str, str | None] | None:
    with reg.sessions() as s:
        row = s.execute(
            select(AbisJob.status, AbisJob.response).where(AbisJob.request_id == request_id)
        ).first()
    return None if row is None else (row[0], row[1])


async def _wait(reg: RegistryDep, request_id: str, seconds: float) -> JSONResponse:
    deadline = time.monotonic() + seconds
    while True:
        found = await run_in_threadpool(_answer_of, reg, request_id)
        if found is None:
            raise NotFound("no such request")
        status, response = found
        if status == "done" and response is not None:
            return JSONResponse(json.loads(response))
        if time.monotonic() >= deadline:
            return JSONResponse({"requestId": request_id, "status": status}, status_code=202)
        await asyncio.sleep(0.05)


@router.post("/requests")
async def submit_request(
    reg: RegistryDep, request: Request, authorization: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """One MOSIP ABIS request (insert, identify, delete, ping, pendingJobs, referenceCount),
    answered as on the queue (HTTP 200 for failures too: returnValue 2 and a failureReason)."""
    _authorise(reg, authorization)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            raise TooLarge("the request is too large")

    def take() -> tuple[str | None, dict[str, object] | None]:
        with transaction(reg.sessions) as s:
            job, now = handle(s, body, "http")
            return (None if job is None else job.request_id), now

    request_id, now = await run_in_threadpool(take)
    if now is not None:
        return JSONResponse(now)
    assert request_id is not None and reg.abis is not None
    reg.abis.wake()
    return await _wait(reg, request_id, reg.settings.abis_http_wait_seconds)


@router.get("/requests/{request_id}")
async def get_answer(
    reg: RegistryDep, request_id: str, authorization: Annotated[str | None, Header()] = None
) -> JSONResponse:
    """The answer to a request queued earlier (202 while it is still being worked)."""
    _authorise(reg, authorization)
    return await _wait(reg, request_id[:64], 0)
