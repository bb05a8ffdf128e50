"""The MOSIP ABIS: requests checked as MOSIP's ABIS API 1.1 defines them, queued durably in
PostgreSQL (``abis_jobs``), worked by any number of :class:`AbisWorker` in any number of
processes (claims with ``FOR UPDATE SKIP LOCKED``, leased, at-least-once), answered once
done. Two front doors put requests in the same queue: the broker bridge (``broker.py``,
ActiveMQ over STOMP, as MOSIP talks) and HTTP (``router.py``).

Ordering: an identify is claimed only once every insert and delete queued before it is done
(MOSIP: "an identify must take into account every insert queued before it"); an insert or a
delete waits for earlier writes of the same reference. Idempotence: a request id is queued
once (a redelivered message gets the stored answer); a job retried after its worker died
finds what its first run committed (the reference it inserted, the tombstone it left) and
goes on from there, so a retry never answers "already exists" to its own insert.

The steps of an insert: fetch and open the datashare, make the templates (outside any
transaction), commit the reference, add it to its shard, mark the job done. A shard that
restarts in between reloads it from the database, so no step can lose a reference; a
reference added to a shard by a run that then died is committed by the retry, and one that
never is gets dropped from the shard by the identify that proposes it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import struct
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import numpy as np
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from biometrics import face
from biometrics import fingerprint as fp
from central_api.abis import formats
from central_api.abis.engine import Engine, LocalEngine, Probe, RayEngine, Reference
from central_api.abis.exceptions import AbisError, EngineUnavailable
from central_api.abis.formats import Biometrics, FormatError
from central_api.abis.models import AbisJob, AbisReference
from central_api.config import Settings
from central_api.crypto import FieldCipher
from central_api.db import transaction, utcnow
from central_api.dedup.extraction import face_template
from central_api.dedup.fusion import Comparison, Thresholds

log = logging.getLogger(__name__)

INSERT, IDENTIFY, DELETE = "mosip.abis.insert", "mosip.abis.identify", "mosip.abis.delete"
PING, PENDING, COUNT = "mosip.abis.ping", "mosip.abis.pendingJobs", "mosip.abis.referenceCount"
QUEUED: Final = (INSERT, IDENTIFY, DELETE)  # worked by the queue
IMMEDIATE: Final = (PING, PENDING, COUNT)  # answered on arrival
VERSION: Final = "1.1"
MAX_ATTEMPTS: Final = 5
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
_ALLOWED: Final = {
    INSERT: {"id", "version", "requestId", "requesttime", "referenceId", "referenceURL"},
    IDENTIFY: {
        "id",
        "version",
        "requestId",
        "requesttime",
        "referenceId",
        "referenceURL",
        "referenceUrl",
        "flags",
        "gallery",
    },
    DELETE: {"id", "version", "requestId", "requesttime", "referenceId"},
    PING: {"id", "version", "requestId", "requesttime"},
    PENDING: {"id", "version", "requestId", "requesttime"},
    COUNT: {"id", "version", "requestId", "requesttime"},
}


class Failure(AbisError):
    """A request answered with returnValue 2 and this ``reason`` (MOSIP's failure codes:
    docs/mosip-abis.md §2)."""

    def __init__(self, reason: int, message: str, request: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.request = request or {}

    def response(self) -> dict[str, Any]:
        """The failure response."""
        return answer(self.request, "2", failureReason=str(self.reason))


def now_text() -> str:
    """A MOSIP timestamp: ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def answer(request: dict[str, Any], value: str, **fields: Any) -> dict[str, Any]:
    """A response to ``request``: its id and requestId echoed, the time, the return value."""
    out: dict[str, Any] = {
        "id": request.get("id") if isinstance(request.get("id"), str) else None,
        "requestId": request.get("requestId")
        if isinstance(request.get("requestId"), str)
        else None,
        "responsetime": now_text(),
        "returnValue": value,
    }
    out.update(fields)
    return out


def _str(request: dict[str, Any], key: str) -> str | None:
    v = request.get(key)
    return v if isinstance(v, str) and v.strip() else None


def parse_request(body: bytes | str) -> dict[str, Any]:
    """A request checked in MOSIP's order (the mock ABIS's and the ABIS test kit's): id (14),
    version (13), requestId (6), requesttime (9, 15), referenceId (5), referenceURL (8 for an
    insert), unknown fields (4); a body that is not a JSON object: 4. Returns the request."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Failure(4, "the request is not JSON") from exc
    if not isinstance(request, dict):
        raise Failure(4, "the request is not a JSON object")
    op = request.get("id")
    if op not in _ALLOWED:
        raise Failure(14, "unknown operation id", request)
    if request.get("version") != VERSION:
        raise Failure(13, "version must be 1.1", request)
    request_id = _str(request, "requestId")
    if request_id is None or len(request_id) > 64:
        raise Failure(6, "requestId missing", request)
    stamp = _str(request, "requesttime")
    if stamp is None:
        raise Failure(9, "requesttime missing", request)
    if not _TIME.match(stamp):
        raise Failure(15, "requesttime is not yyyy-MM-ddTHH:mm:ss.SSSZ", request)
    reference = _str(request, "referenceId")
    if reference is not None and len(reference) > 64:
        raise Failure(5, "referenceId longer than 64 characters", request)
    url = _str(request, "referenceURL") or _str(request, "referenceUrl")
    if op in (INSERT, DELETE) and reference is None:
        raise Failure(5, "referenceId missing", request)
    if op == INSERT and url is None:
        raise Failure(8, "referenceURL missing", request)
    if op == IDENTIFY and reference is None and url is None:
        raise Failure(5, "referenceId (or referenceURL) missing", request)
    if set(request) - _ALLOWED[op]:
        raise Failure(4, "unknown fields in the request", request)
    if op == IDENTIFY:
        _flags(request)
        _gallery(request)
    return request


def _flags(request: dict[str, Any]) -> tuple[int | None, float | None]:
    """``maxResults`` and ``targetFPIR`` (``round(-10 log10 FPIR)``), strings or numbers."""
    flags = request.get("flags") or {}
    if not isinstance(flags, dict):
        raise Failure(4, "flags is not an object", request)
    out: list[float | None] = []
    for key in ("maxResults", "targetFPIR"):
        v = flags.get(key)
        if v in (None, ""):
            out.append(None)
            continue
        try:
            number = float(v)
        except (TypeError, ValueError) as exc:
            raise Failure(4, f"flags.{key} is not a number", request) from exc
        if not math.isfinite(number) or number < 1 or number > 1000:
            raise Failure(4, f"flags.{key} is out of range", request)
        out.append(number)
    top, fpir = out
    return (
        None if top is None else int(top),
        None if fpir is None else 10 ** (-fpir / 10),
    )


def _gallery(request: dict[str, Any]) -> list[str] | None:
    gallery = request.get("gallery")
    if gallery in (None, {}):
        return None
    ids = gallery.get("referenceIds") if isinstance(gallery, dict) else None
    if not isinstance(ids, list) or len(ids) > 10_000:
        raise Failure(4, "gallery.referenceIds is not a list (of at most 10,000)", request)
    out = []
    for item in ids:
        ref = item.get("referenceId") if isinstance(item, dict) else None
        if not isinstance(ref, str) or not ref or len(ref) > 64:
            raise Failure(4, "a gallery entry has no referenceId", request)
        out.append(ref)
    return out


# -- the queue ---------------------------------------------------------------------------------
def submit(s: Session, request: dict[str, Any], transport: str, form: str = "text") -> AbisJob:
    """Queue a checked request (one of ``QUEUED``), once per requestId: a request id already
    queued returns its job (a redelivered message is not worked twice)."""
    job = s.scalar(select(AbisJob).where(AbisJob.request_id == request["requestId"]))
    if job is not None:
        return job
    job = AbisJob(
        request_id=request["requestId"],
        operation=request["id"],
        reference_id=_str(request, "referenceId") if request["id"] != IDENTIFY else None,
        request=json.dumps(request),
        transport=transport,
        reply_form=form,
    )
    s.add(job)
    s.flush()
    return job


def record_answer(
    s: Session, request: dict[str, Any], response: dict[str, Any], transport: str, form: str
) -> None:
    """Keep an answer given on arrival (a refusal, a ping) for the broker's outbox."""
    request_id = response.get("requestId") or f"unparsed-{time.time_ns()}"
    if s.scalar(select(AbisJob.id).where(AbisJob.request_id == request_id)) is not None:
        request_id = f"{request_id[:40]}-dup-{time.time_ns()}"
    s.add(
        AbisJob(
            request_id=request_id,
            operation=str(request.get("id") or "invalid")[:32],
            request=json.dumps({k: request.get(k) for k in ("id", "requestId")}),
            transport=transport,
            reply_form=form,
            status="done",
            response=json.dumps(response),
            done_at=utcnow(),
        )
    )


def immediate(s: Session, request: dict[str, Any]) -> dict[str, Any]:
    """The answer to ping, pendingJobs or referenceCount."""
    op = request["id"]
    if op == PING:
        return answer(request, "1")
    if op == PENDING:
        pending = s.scalar(
            select(func.count()).select_from(AbisJob).where(AbisJob.status != "done")
        )
        return answer(request, "1", jobscount=str(pending or 0))
    count = s.scalar(
        select(func.count()).select_from(AbisReference).where(AbisReference.deleted_at.is_(None))
    )
    return answer(request, "1", count=str(count or 0))


def handle(
    s: Session, body: bytes | str, transport: str, form: str = "text"
) -> tuple[AbisJob | None, dict[str, Any] | None]:
    """Take one request off a front door: a queued job, or an answer given now (a refusal,
    ping, pendingJobs, referenceCount; kept for the broker's outbox when it came that way)."""
    try:
        request = parse_request(body)
    except Failure as failure:
        response = failure.response()
        if transport == "stomp":
            record_answer(s, failure.request, response, transport, form)
        return None, response
    if request["id"] in IMMEDIATE:
        response = immediate(s, request)
        if transport == "stomp":
            record_answer(s, request, response, transport, form)
        return None, response
    return submit(s, request, transport, form), None


# -- references at rest ------------------------------------------------------------------------
_FINGER = struct.Struct(">BI")


def _context(reference_id: str, part: str) -> str:
    return f"abis_reference:{reference_id}:{part}"


def seal_reference(
    cipher: FieldCipher, row: AbisReference, probe: Probe, irises: list[bytes]
) -> np.ndarray | None:
    """Store a reference's templates on ``row``, encrypted; returns the fingers' index codes
    (computed here once, stored beside them), in ``sorted(probe.fingers)`` order."""
    ref = row.reference_id
    if len(probe.faces):
        row.faces = cipher.encrypt(face.template_to_bytes(probe.faces), _context(ref, "faces"))
    codes = None
    if probe.fingers:
        parts = []
        codes = np.stack([fp.index_code(probe.fingers[p]) for p in sorted(probe.fingers)])
        for position, code in zip(sorted(probe.fingers), codes, strict=True):
            iso = probe.fingers[position].to_iso19794_2()
            parts.append(_FINGER.pack(position, len(iso)) + iso + code.tobytes())
        row.fingers = cipher.encrypt(b"".join(parts), _context(ref, "fingers"))
    if irises:
        framed = b"".join(struct.pack(">I", len(r)) + r for r in irises)
        row.irises = cipher.encrypt(framed, _context(ref, "irises"))
    return codes


def open_reference(cipher: FieldCipher, row: AbisReference) -> Reference:
    """A stored reference's templates."""
    faces = (
        face.template_from_bytes(cipher.decrypt(row.faces, _context(row.reference_id, "faces")))
        if row.faces
        else np.zeros((0, face.TEMPLATE_DIM), np.float32)
    )
    fingers: dict[int, fp.FingerprintTemplate] = {}
    codes = []
    if row.fingers:
        raw = cipher.decrypt(row.fingers, _context(row.reference_id, "fingers"))
        at = 0
        while at < len(raw):
            position, n = _FINGER.unpack_from(raw, at)
            at += _FINGER.size
            t = fp.FingerprintTemplate.from_iso19794_2(raw[at : at + n])
            fingers[position] = formats.at_position(t, position)
            codes.append(np.frombuffer(raw[at + n : at + n + 32], np.uint8))
            at += n + 32
    return Reference(row.id, faces, fingers, np.stack(codes) if codes else None)


def load_references(
    factory: sessionmaker[Session], cipher: FieldCipher, index: int = 0, shards: int = 1
) -> Iterator[list[Reference]]:
    """The live references of shard ``index`` of ``shards``, in batches (for a shard's start)."""
    last = 0
    while True:
        with factory() as s:
            rows = list(
                s.scalars(
                    select(AbisReference)
                    .where(
                        AbisReference.id > last,
                        AbisReference.deleted_at.is_(None),
                        AbisReference.id % shards == index,
                    )
                    .order_by(AbisReference.id)
                    .limit(2000)
                )
            )
        if not rows:
            return
        yield [open_reference(cipher, r) for r in rows]
        last = rows[-1].id


def shard_loader(
    database_url: str, data_key: bytes, index: int, shards: int
) -> Iterator[list[Reference]]:
    """``load_references`` from a database URL and key (what a Ray actor is given)."""
    from central_api.db import make_engine, make_session_factory

    engine = make_engine(database_url)
    try:
        yield from load_references(
            make_session_factory(engine, data_key), FieldCipher(data_key), index, shards
        )
    finally:
        engine.dispose()


def make_engine_for(
    settings: Settings, factory: sessionmaker[Session], cipher: FieldCipher
) -> Engine:
    """The engine the settings ask for: local shards loaded now, or Ray actors (started or
    found) that load their own parts."""
    if settings.abis_engine == "ray":
        loader = functools.partial(shard_loader, settings.database_url, settings.key_bytes())
        return RayEngine(settings.abis_shards, loader, address=settings.abis_ray_address)
    engine = LocalEngine(settings.abis_shards)
    for batch in load_references(factory, cipher):
        engine.add(batch)
    return engine


def partner_key(settings: Settings) -> Any:
    """The ABIS partner's RSA private key (datashares are encrypted to it), or None."""
    path = settings.abis_partner_key_file
    if path is None:
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from central_api.config import read_secret_file

    key = load_pem_private_key(
        read_secret_file(path, "CENTRAL_ABIS_PARTNER_KEY_FILE").encode(), None
    )
    return key


# -- the worker --------------------------------------------------------------------------------
def templates(bio: Biometrics) -> Probe:
    """The templates of a CBEFF's biometrics: the registry's face template of each face image,
    finger templates made from the images (or taken as sent, for minutiae records).
    FormatError(18) when nothing usable is left."""
    faces = []
    for image in bio.faces:
        try:
            faces.append(face_template(image)[0])
        except face.FaceError:
            continue
    fingers = dict(bio.finger_templates)
    for position, finger in bio.finger_images.items():
        try:
            fingers[position] = fp.extract(finger.pixels, dpi=finger.dpi, position=position)
        except fp.FingerprintError:
            continue
    if not faces and not fingers:
        raise FormatError("no usable face or finger in the biometrics", 18)
    return Probe(np.asarray(faces, np.float32).reshape(-1, face.TEMPLATE_DIM), fingers)


class AbisWorker:
    """Claims ABIS jobs and works them against ``engine``. Run several, in several processes:
    the claims never overlap (SKIP LOCKED), a job of a worker that died is taken over when its
    lease ends."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        cipher: FieldCipher,
        settings: Settings,
        engine: Engine | None,
        partner_key: Any = None,
        fetch: Any = None,
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self._engine = engine
        self._key = partner_key
        self._fetch = fetch or self._http_fetch
        self._wake = threading.Event()
        self.on_done: Any = None  # called with the request id of every job done here

    @property
    def engine(self) -> Engine:
        """The search engine (set at start-up)."""
        if self._engine is None:
            raise EngineUnavailable("the ABIS's engine is not started")
        return self._engine

    @engine.setter
    def engine(self, engine: Engine) -> None:
        self._engine = engine

    def wake(self) -> None:
        """Tell the worker a job was queued."""
        self._wake.set()

    # -- claiming
    def _claim(self) -> AbisJob | None:
        now = utcnow()
        older = aliased(AbisJob)
        writes_before = select(older.id).where(
            older.id < AbisJob.id,
            older.operation.in_((INSERT, DELETE)),
            older.status != "done",
        )
        with transaction(self._factory) as s:
            job = s.scalar(
                select(AbisJob)
                .where(
                    or_(
                        AbisJob.status == "queued",
                        and_(AbisJob.status == "processing", AbisJob.lease_until < now),
                    ),
                    or_(
                        and_(AbisJob.operation == IDENTIFY, ~writes_before.exists()),
                        and_(
                            AbisJob.operation != IDENTIFY,
                            ~writes_before.where(
                                older.reference_id == AbisJob.reference_id
                            ).exists(),
                        ),
                    ),
                )
                .order_by(AbisJob.id)
                .limit(1)
                .with_for_update(skip_locked=True, of=AbisJob)
            )
            if job is None:
                return None
            job.status = "processing"
            job.attempts += 1
            job.lease_until = now + timedelta(seconds=self._settings.abis_lease_seconds)
            s.flush()
            s.expunge(job)
            return job

    def process_next(self) -> str | None:
        """Claim and work one job; its request id, or None when none can run now."""
        job = self._claim()
        if job is None:
            return None
        request = json.loads(job.request)
        try:
            if job.attempts > MAX_ATTEMPTS:
                raise Failure(1, "the job failed repeatedly", request)
            response = self._work(job, request)
        except Failure as failure:
            failure.request = request
            response = failure.response()
        except EngineUnavailable as exc:  # not the job's fault: not an attempt; back off
            log.warning("ABIS job %d waits: %s", job.id, exc)
            self._release(job.id, charge=False)
            time.sleep(1.0)
            return job.request_id
        except Exception:
            log.exception("ABIS job %d failed; it will be retried", job.id)
            self._release(job.id)
            return job.request_id
        with transaction(self._factory) as s:
            row = s.get(AbisJob, job.id, with_for_update=True)
            if row is not None and row.status != "done":
                row.status, row.response, row.done_at = "done", json.dumps(response), utcnow()
                row.lease_until = None
        if self.on_done is not None:
            self.on_done(job.request_id)
        return job.request_id

    def _release(self, job_id: int, charge: bool = True) -> None:
        """Put a claimed job back in the queue (``charge``: it counts as an attempt)."""
        with transaction(self._factory) as s:
            row = s.get(AbisJob, job_id)
            if row is not None and row.status == "processing":
                row.status, row.lease_until = "queued", None
                if not charge:
                    row.attempts -= 1

    def run(self, stop: threading.Event) -> None:
        """Work jobs until ``stop`` is set."""
        while not stop.is_set():
            try:
                if self.process_next() is not None:
                    continue
            except Exception:
                log.exception("ABIS worker error; retrying shortly")
            self._wake.wait(self._settings.worker_poll_seconds)
            self._wake.clear()

    # -- the operations
    def _work(self, job: AbisJob, request: dict[str, Any]) -> dict[str, Any]:
        if job.operation == INSERT:
            return self._insert(job, request)
        if job.operation == DELETE:
            return self._delete(job, request)
        return self._identify(request)

    def _http_fetch(self, url: str) -> bytes:
        if not url.startswith(("https://", "http://")):
            raise Failure(7, "referenceURL is not an http(s) URL")
        limit = formats.MAX_CBEFF_BYTES * 2
        try:
            with httpx.stream("GET", url, timeout=self._settings.abis_fetch_timeout_seconds) as r:
                if r.status_code != 200:
                    raise Failure(7, f"the datashare answered HTTP {r.status_code}")
                body = b""
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise Failure(7, "the datashare is too large")
        except httpx.HTTPError as exc:
            raise Failure(7, "the datashare cannot be fetched") from exc
        if body[:1] == b"{":  # MOSIP's datashare errors come back as HTTP 200 with errors[]
            text = body[:2000].decode("utf-8", "replace")
            raise Failure(17 if "DAT-SER-006" in text else 7, "the datashare answered an error")
        return body

    def _biometrics(self, url: str) -> tuple[Probe, list[bytes]]:
        """The templates (and iris records) of the datashare at ``url``."""
        body = self._fetch(url)
        try:
            bio = formats.parse(formats.open_datashare(body, self._key))
            return (templates(bio) if not bio.empty() else _no_data()), bio.irises
        except FormatError as exc:
            raise Failure(exc.reason, str(exc)) from exc

    def _insert(self, job: AbisJob, request: dict[str, Any]) -> dict[str, Any]:
        ref_id = request["referenceId"]
        with self._factory() as s:
            row = s.scalar(select(AbisReference).where(AbisReference.reference_id == ref_id))
            mine = row is not None and row.job_id == job.id and row.deleted_at is None
            if row is not None and row.deleted_at is None and not mine:
                raise Failure(10, "referenceId already exists")
        if mine:  # this job's first run committed it, then died: go on from there
            with self._factory() as s:
                row = s.scalar(select(AbisReference).where(AbisReference.reference_id == ref_id))
                assert row is not None
                reference = open_reference(self._cipher, row)
        else:
            probe, irises = self._biometrics(request.get("referenceURL") or "")
            with transaction(self._factory) as s:
                old = s.scalar(select(AbisReference).where(AbisReference.reference_id == ref_id))
                if old is not None and old.deleted_at is None and old.job_id != job.id:
                    raise Failure(10, "referenceId already exists")
                if old is not None and old.deleted_at is None:
                    # another run of this job (its lease ran out while this one worked) got
                    # there first: its reference is this job's
                    reference = open_reference(self._cipher, old)
                else:
                    if old is not None:  # inserted again after a delete: the tombstone goes
                        s.delete(old)
                        s.flush()
                    row = AbisReference(reference_id=ref_id, job_id=job.id)
                    codes = seal_reference(self._cipher, row, probe, irises)
                    s.add(row)
                    s.flush()
                    reference = Reference(row.id, probe.faces, probe.fingers, codes)
        self.engine.add([reference])
        return answer(request, "1")

    def _delete(self, job: AbisJob, request: dict[str, Any]) -> dict[str, Any]:
        ref_id = request["referenceId"]
        with transaction(self._factory) as s:
            row = s.scalar(
                select(AbisReference).where(AbisReference.reference_id == ref_id).with_for_update()
            )
            if row is None or (row.deleted_at is not None and row.deleted_by != job.id):
                raise Failure(12, "referenceId not found")
            row.deleted_at = row.deleted_at or utcnow()
            row.deleted_by = job.id
            row.faces = row.fingers = row.irises = None  # nothing kept past the delete
            internal = row.id
        self.engine.remove(internal)
        return answer(request, "1")

    def _identify(self, request: dict[str, Any]) -> dict[str, Any]:
        ref_id = _str(request, "referenceId")
        top, fpir = _flags(request)
        gallery = _gallery(request)
        own: int | None = None
        with self._factory() as s:
            if ref_id is not None:
                row = s.scalar(
                    select(AbisReference).where(
                        AbisReference.reference_id == ref_id, AbisReference.deleted_at.is_(None)
                    )
                )
                if row is None:
                    raise Failure(12, "referenceId not found")
                reference = open_reference(self._cipher, row)
                probe, own = Probe(reference.faces, reference.fingers), row.id
            among = None
            if gallery is not None:
                among = set(
                    s.scalars(
                        select(AbisReference.id).where(
                            AbisReference.reference_id.in_(gallery),
                            AbisReference.deleted_at.is_(None),
                        )
                    )
                )
            size = s.scalar(
                select(func.count())
                .select_from(AbisReference)
                .where(AbisReference.deleted_at.is_(None))
            )
        if ref_id is None:
            url = _str(request, "referenceURL") or _str(request, "referenceUrl") or ""
            probe = self._biometrics(url)[0]
        st = self._settings
        limit = min(top or st.abis_max_results, st.abis_max_results)
        # pre-selection as deep as the registry's own (maxResults caps the answer, it does not
        # buy full comparisons: 30 candidates compared in full cost three times 10)
        found = [
            c
            for c in self.engine.identify(probe, st.dedup_candidates + (own is not None), among)
            if c.person_id != own
        ]
        # candidates: every reference at or above the FPIR MOSIP asked for (targetFPIR), else
        # at the registry's own adjudication FPIR; "duplicate" at the stricter of the two
        cut = fpir or st.dedup_adjudication_fpir
        thresholds = Thresholds(size or 1, min(cut, st.dedup_target_fpir), cut)
        kept = [c for c in found if c.llr >= thresholds.adjudication]
        names = self._alive([c.person_id for c in kept])
        candidates = [
            _candidate(names[c.person_id], c, thresholds) for c in kept if c.person_id in names
        ][:limit]
        return answer(
            request,
            "1",
            candidateList={
                "count": str(len(candidates)),
                "candidates": candidates,
                "analytics": {
                    "gallerySize": str(size or 0),
                    "threshold": f"{thresholds.adjudication:.3f}",
                    "duplicateThreshold": f"{thresholds.duplicate:.3f}",
                },
            },
        )

    def _alive(self, ids: list[int]) -> dict[int, str]:
        """The MOSIP reference ids of those still live; the rest (a shard's copy of a
        reference whose insert never committed, or deleted since) are dropped from it."""
        if not ids:
            return {}
        with self._factory() as s:
            names = {
                i: r
                for i, r in s.execute(
                    select(AbisReference.id, AbisReference.reference_id).where(
                        AbisReference.id.in_(ids), AbisReference.deleted_at.is_(None)
                    )
                )
            }
        for gone in set(ids) - set(names):
            self.engine.remove(gone)
        return names


def _no_data() -> Probe:
    raise FormatError("the CBEFF carries nothing this ABIS matches (irises alone)", 11)


def _confidence(llr: float, thresholds: Thresholds) -> str:
    """0-100: the posterior that the candidate is the probe's person, with a prior of one
    mate in the gallery (a calibrated LLR against ln N)."""
    prior = math.log(max(thresholds.gallery_size, 1))
    return str(round(100 / (1 + math.exp(min(50.0, prior - llr)))))


def _candidate(reference_id: str, c: Comparison, thresholds: Thresholds) -> dict[str, Any]:
    modalities = []
    if c.fingers:
        llr = sum(f.llr for f in c.fingers)
        modalities.append(
            {
                "biometricType": "FIR",
                "analytics": {
                    "internalScore": f"{llr:.3f}",
                    "confidence": _confidence(llr, thresholds),
                    "fingersCompared": str(len(c.fingers)),
                },
            }
        )
    if c.face_score is not None:
        modalities.append(
            {
                "biometricType": "FID",
                "analytics": {
                    "internalScore": f"{c.face_llr:.3f}",
                    "confidence": _confidence(c.face_llr, thresholds),
                },
            }
        )
    return {
        "referenceId": reference_id,
        "analytics": {
            "internalScore": f"{c.llr:.3f}",
            "confidence": _confidence(c.llr, thresholds),
            "decision": "duplicate" if c.llr >= thresholds.duplicate else "adjudicate",
        },
        "modalities": modalities,
    }
