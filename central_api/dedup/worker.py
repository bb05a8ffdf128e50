"""The dedup worker: takes received enrolments from the durable queue (the enrolments table)
in batches, has the registry's templates made from their images side by side (extraction.py),
has the ``Deduplicator`` (service.py) search the galleries for the whole batch at once, then
decide them one at a time, oldest first: each decision sees every one committed before it, so
two copies of one person in one batch are caught as in two batches. Claims are leased: a job
of a worker that died is taken over once its lease runs out, and one that keeps failing is
rejected with a reason.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from central_api.audit.service import record
from central_api.config import Settings
from central_api.crypto import DecryptionError, FieldCipher
from central_api.db import transaction, utcnow
from central_api.dedup.extraction import Extraction, exit_with_parent, extract_references
from central_api.dedup.service import ACTOR, Deduplicator
from central_api.enrolment.models import Enrolment
from central_api.enrolment.schemas import EnrolmentState
from central_api.enrolment.service import ctx, face_templates, finger_images

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# seconds one enrolment's extraction may take, however often its lease is renewed: ten
# fingers at 1-3 s each, and a new process's first finger loads LEADER (9 s from the compile
# cache, about a minute on a machine that has not compiled it yet)
EXTRACTION_LIMIT = 300.0


class _Extractors:
    """The processes that make the registry's templates (:func:`extract_references`), one set
    per process, shared by its deduplicators: started on the first extraction (each loads
    dlib's models once, about 2 s, and LEADER's on its first finger) and started afresh when one
    of them died (killed, out of memory, a codec crashed), so that a lost worker costs one
    retry instead of every decision after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._size = 0

    def submit(self, size: int, *args: object) -> Future[Extraction]:
        """Start a check on ``size`` processes (the pool is rebuilt if the size changed)."""
        for _ in range(2):
            pool = self._get(size)
            try:
                # not typed precisely here: the arguments pass through *args untyped; the call
                # site types them
                return pool.submit(extract_references, *args)  # type: ignore[arg-type]
            except BrokenProcessPool:
                self.discard(pool)
        raise BrokenProcessPool("the extraction processes cannot be started")

    def discard(self, pool: ProcessPoolExecutor | None = None) -> None:
        """Forget the pool (``pool``: only if it is still the current one), e.g. broken."""
        with self._lock:
            if self._pool is not None and pool in (None, self._pool):
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _get(self, size: int) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is not None and self._size != size:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(
                    size,
                    mp_context=context,
                    initializer=exit_with_parent,
                    initargs=(os.getpid(),),
                )
                self._size = size
            return self._pool


_EXTRACTORS = _Extractors()


class DedupWorker:
    """Claims queued enrolments, leases them, and has ``service`` decide them."""

    def __init__(
        self, factory: sessionmaker[Session], cipher: FieldCipher, settings: Settings
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self.service = Deduplicator(factory, cipher, settings)
        self._wake = threading.Event()
        self._done: dict[int, threading.Event] = {}
        self._done_lock = threading.Lock()
        self._lease = settings.processing_lease_seconds

    def wake(self) -> None:
        """Tell the worker that new work is queued."""
        self._wake.set()

    def wait_for(self, enrolment_id: int, timeout: float) -> None:
        """Block until this process has decided ``enrolment_id`` or ``timeout`` passes."""
        with self._done_lock:
            event = self._done.setdefault(enrolment_id, threading.Event())
        event.wait(timeout)
        with self._done_lock:
            self._done.pop(enrolment_id, None)

    def _signal(self, enrolment_id: int) -> None:
        with self._done_lock:
            event = self._done.get(enrolment_id)
        if event is not None:
            event.set()

    def _claim(self) -> tuple[int, uuid.UUID] | None:
        now = utcnow()
        with transaction(self._factory) as s:
            e = s.scalar(
                select(Enrolment)
                .where(
                    or_(
                        Enrolment.status == EnrolmentState.RECEIVED,
                        and_(
                            Enrolment.status == EnrolmentState.PROCESSING,
                            Enrolment.lease_until < now,
                        ),
                    )
                )
                .order_by(Enrolment.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if e is None:
                return None
            if e.attempts >= MAX_ATTEMPTS:
                e.status, e.lease_until = EnrolmentState.REJECTED, None
                e.reason = "processing failed repeatedly"
                record(s, ACTOR, "enrolment.rejected", "enrolment", e.id, reason=e.reason)
                return e.id, e.packet_id
            e.status = EnrolmentState.PROCESSING
            e.lease_until = now + timedelta(seconds=self._lease)
            return e.id, e.packet_id

    def _start(self, enrolment_id: int) -> None:
        """Count an attempt as this job's own processing begins. Not at the claim: a process
        claims a batch, and one killed while deciding the first job of it must not charge the
        jobs it never started (they would be rejected as failing after three such kills)."""
        with transaction(self._factory) as s:
            e = s.get(Enrolment, enrolment_id)
            if e is not None and e.status == EnrolmentState.PROCESSING:
                e.attempts += 1
                e.lease_until = utcnow() + timedelta(seconds=self._lease)
                record(s, ACTOR, "enrolment.processing", "enrolment", e.id, attempt=e.attempts)

    def process_next(self) -> uuid.UUID | None:
        """Claim and decide one queued enrolment; returns its packet id, or None if idle."""
        done = self.process_batch(1)
        return done[0] if done else None

    def process_batch(self, size: int | None = None) -> list[uuid.UUID]:
        """Claim up to ``size`` queued enrolments (default: twice the extraction processes),
        make their templates side by side, search the galleries for all of them at once,
        then decide them one at a time, oldest first; returns their packet ids."""
        claimed = []
        for _ in range(size or 2 * self._settings.extraction_processes):
            job = self._claim()
            if job is None:
                break
            claimed.append(job)
        leased = [eid for eid, _ in claimed]
        jobs = self._start_extractions(leased)
        ready: list[tuple[int, uuid.UUID, Extraction | None]] = []
        for i, (enrolment_id, packet_id) in enumerate(claimed):
            try:
                if enrolment_id not in jobs:  # its extraction could not be started above
                    jobs[enrolment_id] = self._extraction(enrolment_id)
                pending = jobs[enrolment_id]
                made = None if pending is None else self._await_extraction(pending, leased)
                ready.append((enrolment_id, packet_id, made))
            except BrokenProcessPool:
                log.error("an extraction process died; enrolment %s will be retried", packet_id)
                _EXTRACTORS.discard()
                self._start(enrolment_id)  # an attempt: an image that kills the codec every
                self._release(enrolment_id)  # time is rejected after MAX_ATTEMPTS
                # the later jobs' extractions died with the pool: run them again on new processes
                jobs.update(self._start_extractions([eid for eid, _ in claimed[i + 1 :]]))
            except Exception:
                log.exception("extraction failed for enrolment %s; it will be retried", packet_id)
                self._start(enrolment_id)
                self._release(enrolment_id)
        try:
            self.service.search_ahead([(eid, made) for eid, _, made in ready])
        except Exception:  # each is then searched in its turn
            log.exception("the batch's search failed; its jobs are searched one by one")
        for enrolment_id, packet_id, made in ready:
            try:
                self._start(enrolment_id)
                self.service.decide(enrolment_id, made)
            except Exception:
                log.exception("dedup failed for enrolment %s; it will be retried", packet_id)
                self._release(enrolment_id)
            finally:
                self._signal(enrolment_id)
        for enrolment_id, _ in claimed:
            self._signal(enrolment_id)
        return [packet_id for _, packet_id in claimed]

    def _start_extractions(self, enrolment_ids: list[int]) -> dict[int, Future[Extraction] | None]:
        """Start the extractions of these jobs side by side; a job whose extraction cannot start
        (no extraction process could be started) is left out and tried again in its turn."""
        jobs: dict[int, Future[Extraction] | None] = {}
        for enrolment_id in enrolment_ids:
            try:
                jobs[enrolment_id] = self._extraction(enrolment_id)
            except Exception:
                log.exception("the extraction of enrolment %d could not start", enrolment_id)
        return jobs

    def _await_extraction(self, job: Future[Extraction], leased: list[int]) -> Extraction:
        """The extraction's result. While it runs, the leases of the batch's jobs are renewed:
        the first extraction of a process waits for it to start and load dlib's and LEADER's
        models (tens of seconds on a busy machine), and another process must not take over a
        job that is only waiting, nor count it as a failed attempt. Past EXTRACTION_LIMIT:
        TimeoutError."""
        deadline = time.monotonic() + EXTRACTION_LIMIT
        while True:
            left = deadline - time.monotonic()
            try:
                return job.result(timeout=max(0.0, min(self._lease / 3, left)))
            except TimeoutError:
                if left <= 0:
                    raise
                with transaction(self._factory) as s:
                    for e in s.scalars(
                        select(Enrolment).where(
                            Enrolment.id.in_(leased),
                            Enrolment.status == EnrolmentState.PROCESSING,
                        )
                    ):
                        e.lease_until = utcnow() + timedelta(seconds=self._lease)

    def _release(self, enrolment_id: int) -> None:
        """Put a claimed enrolment back in the queue (it is retried; attempts are counted)."""
        with transaction(self._factory) as s:
            e = s.get(Enrolment, enrolment_id)
            if e is not None and e.status == EnrolmentState.PROCESSING:
                e.status, e.lease_until = EnrolmentState.RECEIVED, None
                record(s, ACTOR, "enrolment.retry", "enrolment", enrolment_id)

    def _extraction(self, enrolment_id: int) -> Future[Extraction] | None:
        """Start making the registry's templates of an enrolment's images, before any lock is
        taken (:func:`extract_references`, which also checks that the kiosk's face templates
        are the face of the token image). None when the data cannot be read (the decision says
        so)."""
        with self._factory() as s:
            e = s.get(Enrolment, enrolment_id)
            if e is None or e.status != EnrolmentState.PROCESSING:
                return None  # rejected at the claim: nothing to check
            try:
                image = self._cipher.decrypt(
                    e.face_image, ctx(e.kiosk_id, e.packet_id, "face_image")
                )
                probes = face_templates(self._cipher, e)
                fingers = finger_images(self._cipher, e)
            except DecryptionError:
                return None
        st = self._settings
        return _EXTRACTORS.submit(
            st.extraction_processes, image, probes, st.face_template_agreement, fingers
        )

    def run(self, stop: threading.Event) -> None:
        """Worker loop: decide queued enrolments until ``stop`` is set."""
        while not stop.is_set():
            try:
                if self.process_batch():
                    continue
            except Exception:
                log.exception("dedup worker error; retrying shortly")
            self._wake.wait(self._settings.worker_poll_seconds)
            self._wake.clear()

    def queue_depth(self, session: Session) -> int:
        """Enrolments waiting for or under a decision."""
        return (
            session.scalar(
                select(func.count())
                .select_from(Enrolment)
                .where(Enrolment.status.in_([EnrolmentState.RECEIVED, EnrolmentState.PROCESSING]))
            )
            or 0
        )
