"""The dedup worker: takes received enrolments from the durable queue (the enrolments table),
searches the face gallery 1:N and decides UNIQUE (issue an IDCS), DUPLICATE or ADJUDICATION.

Decisions are serialised: across processes by a PostgreSQL advisory lock (SQLite's single
writer does the same), within a process by a mutex. So two submissions of one person can never
both be found unique, and the in-memory gallery, caught up from the database under that lock,
always holds every reference committed before the decision.
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
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import numpy as np
from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from biometrics import face
from central_api.audit.service import record
from central_api.config import Settings
from central_api.crypto import DecryptionError, FieldCipher
from central_api.db import transaction, utcnow
from central_api.dedup.index import FaceGallery, normalise
from central_api.dedup.models import AdjudicationCase
from central_api.enrolment.models import Enrolment
from central_api.enrolment.policy import exit_with_parent, face_template_mismatch
from central_api.enrolment.schemas import EnrolmentState
from central_api.enrolment.service import ctx, face_templates
from central_api.identity.models import FaceReference
from central_api.identity.service import issue_person

log = logging.getLogger(__name__)

ACTOR = "dedup"
_LOCK_KEY = 0x524E5044  # "RNPD": the advisory lock that serialises dedup decisions
MAX_ATTEMPTS = 3
FACE_CHECK_LIMIT = 120.0  # seconds a face check may take, however often its lease is renewed


class _FaceCheckers:
    """The processes that run face checks (:func:`face_template_mismatch`), one set per
    process, shared by its deduplicators: started on the first check (each loads dlib's models
    once, about 2 s) and started afresh when one of them died (killed, out of memory), so that
    a lost worker costs one retry instead of every decision after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._size = 0

    def submit(self, size: int, *args: object) -> Future[str | None]:
        """Start a check on ``size`` processes (the pool is rebuilt if the size changed)."""
        for _ in range(2):
            pool = self._get(size)
            try:
                # not typed precisely here: the check's arguments pass through *args untyped; the
                # call site types them
                return pool.submit(face_template_mismatch, *args)  # type: ignore[arg-type]
            except BrokenProcessPool:
                self.discard(pool)
        raise BrokenProcessPool("the face-check processes cannot be started")

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


_FACE_CHECKERS = _FaceCheckers()


class Outcome(StrEnum):
    """The three answers of the deduplication."""

    UNIQUE = "unique"
    DUPLICATE = "duplicate"
    ADJUDICATION = "adjudication"


def classify(score: float | None, duplicate_at: float, adjudicate_at: float) -> Outcome:
    """Map the best similarity against the gallery (None: empty gallery) to an outcome."""
    if score is None or score < adjudicate_at:
        return Outcome.UNIQUE
    return Outcome.DUPLICATE if score >= duplicate_at else Outcome.ADJUDICATION


@dataclass(frozen=True)
class Decision:
    """What the dedup decided for one enrolment."""

    outcome: Outcome
    person_id: int | None
    score: float | None


class Deduplicator:
    """Owns the in-memory face gallery and turns queued enrolments into decisions."""

    def __init__(
        self, factory: sessionmaker[Session], cipher: FieldCipher, settings: Settings
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self._policy = settings.idcs_policy()
        self.gallery = FaceGallery()
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._done: dict[int, threading.Event] = {}
        self._done_lock = threading.Lock()
        self._lease = settings.processing_lease_seconds

    # -- gallery ---------------------------------------------------------------------------
    def _ref_vectors(self, refs: list[FaceReference]) -> np.ndarray:
        return np.concatenate(
            [
                face.template_from_bytes(
                    self._cipher.decrypt(r.template, f"face_reference:{r.person_id}")
                )
                for r in refs
            ]
        )

    def _catch_up(self, session: Session) -> int:
        """Load references committed since the gallery's watermark; returns how many."""
        loaded = 0
        while True:
            refs = list(
                session.scalars(
                    select(FaceReference)
                    .where(FaceReference.id > self.gallery.watermark)
                    .order_by(FaceReference.id)
                    .limit(10_000)
                )
            )
            if not refs:
                return loaded
            self.gallery.add(
                [r.id for r in refs], [r.person_id for r in refs], self._ref_vectors(refs)
            )
            loaded += len(refs)

    def load(self) -> int:
        """Build the gallery from the database (at start-up); returns its size."""
        with self._mutex, self._factory() as session:
            self._catch_up(session)
        log.info("face gallery loaded: %d references", len(self.gallery))
        return len(self.gallery)

    def forget_person(self, person_id: int) -> None:
        """Drop a deleted person's references from this process's gallery."""
        with self._mutex:
            self.gallery.remove_person(person_id)

    def _verified_best(
        self, session: Session, probes: np.ndarray
    ) -> tuple[int | None, float | None]:
        """Search the gallery, then recompute the leading candidates' scores from the
        database: the decision rests on stored references, and references of persons deleted
        by another process since this gallery loaded them are dropped here."""
        hits = self.gallery.search(probes, self._settings.dedup_candidates)
        q = normalise(probes)
        for hit in hits:
            refs = list(
                session.scalars(
                    select(FaceReference).where(FaceReference.person_id == hit.person_id)
                )
            )
            if not refs:
                self.gallery.remove_person(hit.person_id)
                continue
            exact = float((q @ normalise(self._ref_vectors(refs)).T).max())
            return hit.person_id, exact
        return None, None

    # -- queue -----------------------------------------------------------------------------
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
        """Claim up to ``size`` queued enrolments (default: twice the face-check processes),
        run their face checks side by side, then decide them one at a time, oldest first;
        returns their packet ids."""
        claimed = []
        for _ in range(size or 2 * self._settings.face_check_processes):
            job = self._claim()
            if job is None:
                break
            claimed.append(job)
        checks = self._start_checks([eid for eid, _ in claimed])
        for i, (enrolment_id, packet_id) in enumerate(claimed):
            try:
                self._start(enrolment_id)
                if enrolment_id not in checks:  # its check could not be started above
                    checks[enrolment_id] = self._face_check(enrolment_id)
                check = checks[enrolment_id]
                mismatch = None if check is None else self._await_check(enrolment_id, check)
                self._decide(enrolment_id, mismatch)
            except BrokenProcessPool:
                log.error("a face-check process died; enrolment %s will be retried", packet_id)
                _FACE_CHECKERS.discard()
                self._release(enrolment_id)
                # the later jobs' checks died with the pool: run them again on new processes
                checks.update(self._start_checks([eid for eid, _ in claimed[i + 1 :]]))
            except Exception:
                log.exception("dedup failed for enrolment %s; it will be retried", packet_id)
                self._release(enrolment_id)
            finally:
                self._signal(enrolment_id)
        return [packet_id for _, packet_id in claimed]

    def _start_checks(self, enrolment_ids: list[int]) -> dict[int, Future[str | None] | None]:
        """Start the face checks of these jobs side by side; a job whose check cannot start
        (no face-check process could be started) is left out and tried again in its turn."""
        checks: dict[int, Future[str | None] | None] = {}
        for enrolment_id in enrolment_ids:
            try:
                checks[enrolment_id] = self._face_check(enrolment_id)
            except Exception:
                log.exception("the face check of enrolment %d could not start", enrolment_id)
        return checks

    def _await_check(self, enrolment_id: int, check: Future[str | None]) -> str | None:
        """The face check's result. While it runs, the enrolment's lease is renewed: the first
        check of a process waits for its workers to start and load dlib's models (seconds on
        a busy machine), and another process must not take over a job that is only waiting,
        nor count it as a failed attempt. Past FACE_CHECK_LIMIT: TimeoutError."""
        deadline = time.monotonic() + FACE_CHECK_LIMIT
        while True:
            left = deadline - time.monotonic()
            try:
                return check.result(timeout=max(0.0, min(self._lease / 3, left)))
            except TimeoutError:
                if left <= 0:
                    raise
                with transaction(self._factory) as s:
                    e = s.get(Enrolment, enrolment_id)
                    if e is not None and e.status == EnrolmentState.PROCESSING:
                        e.lease_until = utcnow() + timedelta(seconds=self._lease)

    def _release(self, enrolment_id: int) -> None:
        """Put a claimed enrolment back in the queue (it is retried; attempts are counted)."""
        with transaction(self._factory) as s:
            e = s.get(Enrolment, enrolment_id)
            if e is not None and e.status == EnrolmentState.PROCESSING:
                e.status, e.lease_until = EnrolmentState.RECEIVED, None
                record(s, ACTOR, "enrolment.retry", "enrolment", enrolment_id)

    def _face_check(self, enrolment_id: int) -> Future[str | None] | None:
        """Start the intake policy's face check, before any lock is taken: are the kiosk's
        templates the face of the token image? None when the data cannot be read (_decide
        says so). dlib holds the GIL for the whole encoding (~0.15 s): in processes of their
        own the checks run side by side and never stall intake or this process's event loop."""
        with self._factory() as s:
            e = s.get(Enrolment, enrolment_id)
            if e is None or e.status != EnrolmentState.PROCESSING:
                return None  # rejected at the claim: nothing to check
            try:
                image = self._cipher.decrypt(
                    e.face_image, ctx(e.kiosk_id, e.packet_id, "face_image")
                )
                probes = face_templates(self._cipher, e)
            except DecryptionError:
                return None
        st = self._settings
        return _FACE_CHECKERS.submit(
            st.face_check_processes, image, probes, st.face_template_agreement
        )

    def _decide(self, enrolment_id: int, face_mismatch: str | None = None) -> None:
        started = time.perf_counter()
        with self._mutex:
            new_refs: list[FaceReference] = []
            with transaction(self._factory) as s:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                e = s.get(Enrolment, enrolment_id, with_for_update=True)
                if e is None or e.status != EnrolmentState.PROCESSING:
                    return  # decided elsewhere after its lease ran out
                try:
                    probes = face_templates(self._cipher, e)
                except DecryptionError:
                    face_mismatch = "unreadable data"
                if face_mismatch is not None:  # not a packet an honest kiosk makes
                    e.status, e.reason, e.lease_until = EnrolmentState.REJECTED, face_mismatch, None
                    record(s, ACTOR, "enrolment.rejected", "enrolment", e.id, reason=e.reason)
                    return
                self._catch_up(s)
                person_id, score = self._verified_best(s, probes)
                st = self._settings
                outcome = classify(
                    score, st.face_duplicate_threshold, st.face_adjudication_threshold
                )
                e.match_score, e.lease_until = score, None
                reason = None
                if outcome is Outcome.UNIQUE and e.policy_hold:
                    # the capture evidence fell short (intake policy "adjudicate"): a person
                    # decides before an identifier is issued
                    outcome, reason = Outcome.ADJUDICATION, f"policy:{e.policy_hold}"[:200]
                elif outcome is Outcome.ADJUDICATION:
                    reason = "near_match"
                if outcome is Outcome.UNIQUE:
                    person = issue_person(s, self._policy, ACTOR)
                    for t in probes:
                        ref = FaceReference(
                            person_id=person.id,
                            enrolment_id=e.id,
                            template=self._cipher.encrypt(
                                face.template_to_bytes(t), f"face_reference:{person.id}"
                            ),
                        )
                        s.add(ref)
                        new_refs.append(ref)
                    s.flush()
                    e.status, e.person_id = EnrolmentState.ISSUED, person.id
                    record(s, ACTOR, "idcs.issued", "person", person.id, enrolment=e.id)
                elif outcome is Outcome.DUPLICATE:
                    e.status, e.person_id = EnrolmentState.DUPLICATE, person_id
                else:
                    e.status = EnrolmentState.ADJUDICATION
                    s.add(
                        AdjudicationCase(
                            enrolment_id=e.id,
                            candidate_person_id=person_id,
                            score=score if score is not None else 0.0,
                            reason=reason,
                        )
                    )
                record(
                    s,
                    ACTOR,
                    f"enrolment.{e.status}",
                    "enrolment",
                    e.id,
                    score=None if score is None else round(score, 4),
                    candidate=person_id,
                )
                packet_id, status = e.packet_id, e.status
            # committed: only now may the new references join this process's gallery
            if new_refs:
                self.gallery.add(
                    [r.id for r in new_refs],
                    [r.person_id for r in new_refs],
                    probes,
                )
        log.info(
            "enrolment %s -> %s in %.1f ms (gallery %d)",
            packet_id,
            status,
            (time.perf_counter() - started) * 1e3,
            len(self.gallery),
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
