"""The dedup decision: a claimed enrolment searched 1:N against every enrolled person, on the
fingers and the face fused (``fusion``), and decided UNIQUE (issue an IDCS), DUPLICATE or
ADJUDICATION, with its evidence stored.

Decisions are serialised: across processes by a PostgreSQL advisory lock (SQLite's single
writer does the same), within a process by a mutex. So two submissions of one person can never
both be found unique, and the in-memory galleries, caught up from the database under that lock,
always hold every reference committed before the decision. The worker loop that claims the
queued enrolments is ``worker.py``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from biometrics import face
from biometrics import fingerprint as fp
from biometrics.gallery import FaceGallery, FingerGallery, Hit, merge
from central_api.adjudication.models import AdjudicationCase
from central_api.audit.service import record
from central_api.config import Settings
from central_api.crypto import DecryptionError, FieldCipher
from central_api.db import transaction
from central_api.dedup import fusion
from central_api.dedup.extraction import Extraction, face_template, finger_template
from central_api.dedup.fusion import Comparison, Outcome, Thresholds
from central_api.enrolment.models import Enrolment
from central_api.enrolment.schemas import EnrolmentState
from central_api.enrolment.service import ctx, face_templates, finger_images, finger_templates
from central_api.exceptions import InvalidRequest
from central_api.identity.models import FaceReference, FingerReference, Person
from central_api.identity.service import issue_person

log = logging.getLogger(__name__)

ACTOR = "dedup"
_LOCK_KEY = 0x524E5044  # "RNPD": the advisory lock that serialises dedup decisions
_EVIDENCE_CANDIDATES = 5  # candidates kept in a decision's evidence, best first


def face_context(person_id: int) -> str:
    """Encryption context of a person's face references."""
    return f"face_reference:{person_id}"


def face_similarity(s: Session, cipher: FieldCipher, person_id: int, probe: np.ndarray) -> float:
    """The best 1:1 similarity of a live face template with a person's face references of
    the current algorithm (-1.0 when they have none): what a kiosk's verification of a
    registered person compares with ``face.threshold_for_fmr``."""
    best = -1.0
    for r in s.scalars(
        select(FaceReference).where(
            FaceReference.person_id == person_id, FaceReference.algorithm == face.ALGORITHM
        )
    ):
        for t in face.template_from_bytes(cipher.decrypt(r.template, face_context(person_id))):
            best = max(best, face.compare(probe, t))
    return best


def probe_context(enrolment_id: int) -> str:
    """Encryption context of an adjudication case's probe templates."""
    return f"adjudication_probe:{enrolment_id}"


def probe_to_bytes(faces: np.ndarray, fingers: dict[int, fp.FingerprintTemplate]) -> bytes:
    """A probe's templates as stored with its adjudication case (JSON: the face templates'
    stored form and each finger's ISO/IEC 19794-2 record, base64)."""
    return json.dumps(
        {
            "faces": base64.b64encode(face.template_to_bytes(faces)).decode(),
            "fingers": {
                str(p): base64.b64encode(t.to_iso19794_2()).decode()
                for p, t in sorted(fingers.items())
            },
        }
    ).encode()


def probe_from_bytes(raw: bytes) -> tuple[np.ndarray, dict[int, fp.FingerprintTemplate]]:
    """The inverse of :func:`probe_to_bytes`."""
    data = json.loads(raw)
    fingers = {
        int(p): dataclasses.replace(
            fp.FingerprintTemplate.from_iso19794_2(base64.b64decode(b)), position=int(p)
        )
        for p, b in data["fingers"].items()
    }
    return face.template_from_bytes(base64.b64decode(data["faces"])), fingers


def finger_context(person_id: int, position: int) -> str:
    """Encryption context of a person's finger reference at one position."""
    return f"finger_reference:{person_id}:{position}"


def finger_reference(
    cipher: FieldCipher, person_id: int, enrolment_id: int, t: fp.FingerprintTemplate
) -> FingerReference:
    """A new finger reference of ``t`` (its ``position`` set) with its index code, both
    encrypted, made by the current algorithm."""
    context = finger_context(person_id, t.position)
    return FingerReference(
        person_id=person_id,
        enrolment_id=enrolment_id,
        position=t.position,
        algorithm=fp.ALGORITHM,
        template=cipher.encrypt(t.to_iso19794_2(), context),
        index_code=cipher.encrypt(fp.index_code(t).tobytes(), context + ":code"),
    )


# a probe: face templates, finger templates by position, and where they came from
_Probe = tuple[np.ndarray, dict[int, fp.FingerprintTemplate], dict[str, object]]


@dataclasses.dataclass(frozen=True)
class _Ahead:
    """A job's probe and what the galleries proposed for it when its batch was searched."""

    faces: np.ndarray
    fingers: dict[int, fp.FingerprintTemplate]
    origin: dict[str, object]
    face_hits: list[Hit]
    finger_hits: list[Hit]


class Deduplicator:
    """Owns the in-memory galleries (faces, fingers) and decides claimed enrolments.

    A batch of jobs is searched at once (:meth:`search_ahead`: one index scan per gallery for
    all of them); each is then decided in turn (:meth:`decide`), its candidates being what the
    batch's search proposed merged with a search of the persons the galleries gained since
    (issued earlier in the batch, or by another process): the same candidates as a search of
    the whole gallery at its turn, but the large index is scanned once per batch."""

    def __init__(
        self, factory: sessionmaker[Session], cipher: FieldCipher, settings: Settings
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self._policy = settings.idcs_policy()
        self.faces = FaceGallery()
        self.fingers = FingerGallery()
        self._persons: set[int] = set()
        self._watermarks = {FaceReference: 0, FingerReference: 0}
        self._mutex = threading.Lock()
        # the candidates' full comparisons, side by side (the compiled matcher and numpy's
        # larger steps release the GIL); started on first use, stopped by ``close``
        self._comparers: ThreadPoolExecutor | None = None
        self._ahead: dict[int, _Ahead] = {}  # jobs searched ahead, not yet decided
        # what the galleries gained since the batch's search (None: no batch searched ahead)
        self._since: tuple[FaceGallery, FingerGallery] | None = None

    def close(self) -> None:
        """Stop the comparison threads (started again if the deduplicator is used again)."""
        with self._mutex:
            if self._comparers is not None:
                self._comparers.shutdown()
                self._comparers = None

    @property
    def persons(self) -> int:
        """How many enrolled persons the galleries hold."""
        return len(self._persons)

    # -- galleries -------------------------------------------------------------------------
    def _catch_up(self, session: Session) -> int:
        """Load references committed since the galleries' watermarks (of the current
        algorithms only: templates of other versions are never compared); returns how many."""
        loaded = 0
        for model in (FaceReference, FingerReference):
            algorithm = face.ALGORITHM if model is FaceReference else fp.ALGORITHM
            while True:
                refs: Sequence[FaceReference | FingerReference] = list(
                    session.scalars(
                        select(model)
                        .where(model.id > self._watermarks[model], model.algorithm == algorithm)
                        .order_by(model.id)
                        .limit(10_000)
                    )
                )
                if not refs:
                    break
                self._add_refs(refs)
                self._watermarks[model] = refs[-1].id
                loaded += len(refs)
        return loaded

    def _add_refs(self, refs: Sequence[FaceReference | FingerReference]) -> None:
        faces: dict[int, list[np.ndarray]] = defaultdict(list)
        fingers: dict[int, list[fp.FingerprintTemplate]] = defaultdict(list)
        codes: dict[int, list[bytes | None]] = defaultdict(list)
        for r in refs:
            if isinstance(r, FaceReference):
                raw = self._cipher.decrypt(r.template, face_context(r.person_id))
                faces[r.person_id].append(face.template_from_bytes(raw)[0])
            else:
                context = finger_context(r.person_id, r.position)
                raw = self._cipher.decrypt(r.template, context)
                t = fp.FingerprintTemplate.from_iso19794_2(raw)
                fingers[r.person_id].append(dataclasses.replace(t, position=r.position))
                code = r.index_code
                codes[r.person_id].append(
                    None if code is None else self._cipher.decrypt(code, context + ":code")
                )
        for person_id, templates in faces.items():
            self._add_face(person_id, np.stack(templates))
        for person_id, prints in fingers.items():
            known = codes[person_id]
            self._add_fingers(
                person_id,
                prints,
                None  # made before codes were kept (migration 0006): computed here
                if any(c is None for c in known)
                else np.frombuffer(b"".join(c for c in known if c), np.uint8),
            )

    def _add_face(self, person_id: int, templates: np.ndarray) -> None:
        """A person's face templates join the gallery (and what it gained since the batch's
        search, while a batch is being decided)."""
        self.faces.add(person_id, templates)
        if self._since is not None:
            self._since[0].add(person_id, templates)
        self._persons.add(person_id)

    def _add_fingers(
        self, person_id: int, prints: list[fp.FingerprintTemplate], codes: np.ndarray | None
    ) -> None:
        """As ``_add_face``, for fingers (``codes``: their index codes, None to compute)."""
        if codes is None and prints:
            codes = np.stack([fp.index_code(t) for t in prints])
        self.fingers.add(person_id, prints, codes)
        if self._since is not None:
            self._since[1].add(person_id, prints, codes)
        self._persons.add(person_id)

    def load(self) -> int:
        """Build the galleries from the database (at start-up); returns the persons held."""
        with self._mutex, self._factory() as session:
            self._catch_up(session)
        log.info("galleries loaded: %d persons", self.persons)
        return self.persons

    def _forget(self, person_id: int) -> None:
        for gallery in (self.faces, self.fingers, *(self._since or ())):
            gallery.remove(person_id)
        self._persons.discard(person_id)

    # -- search ----------------------------------------------------------------------------
    def search_ahead(self, jobs: Sequence[tuple[int, Extraction | None]]) -> None:
        """Search the galleries for a batch of claimed enrolments at once (``decide`` then
        completes each search with what the galleries gained since). Jobs whose data cannot
        be read, or whose extraction rejects them, are left to ``decide``."""
        k = self._settings.dedup_candidates
        with self._mutex, self._factory() as s:
            self._catch_up(s)
            probes: dict[int, _Probe] = {}
            for enrolment_id, made in jobs:
                e = s.get(Enrolment, enrolment_id)
                if e is None or (made is not None and made.rejected is not None):
                    continue
                try:
                    probes[enrolment_id] = self._probe(e, made)
                except (DecryptionError, fp.TemplateFormatError):
                    continue
            faces = self.faces.search_many([p[0] for p in probes.values()], k)
            fingers = self.fingers.search_many([list(p[1].values()) for p in probes.values()], k)
            self._ahead = {
                enrolment_id: _Ahead(*probe, face_hits, finger_hits)
                for (enrolment_id, probe), face_hits, finger_hits in zip(
                    probes.items(), faces, fingers, strict=True
                )
            }
            self._since = (FaceGallery(), FingerGallery()) if self._ahead else None

    def search(
        self,
        session: Session,
        probe_faces: np.ndarray,
        probe_fingers: dict[int, fp.FingerprintTemplate],
        ahead: _Ahead | None = None,
    ) -> list[Comparison]:
        """Every candidate either gallery proposes, compared in full and fused, best first
        (``ahead``: the gallery's proposals when the batch was searched, completed here with a
        search of what it gained since). Candidates deleted by another process since this one
        loaded them are dropped here."""
        k = self._settings.dedup_candidates
        prints = list(probe_fingers.values())
        if ahead is None or self._since is None:
            face_hits, finger_hits = (
                self.faces.search(probe_faces, k),
                self.fingers.search(prints, k),
            )
        else:
            since_faces, since_fingers = self._since
            face_hits = merge(ahead.face_hits + since_faces.search(probe_faces, k), k)
            finger_hits = merge(ahead.finger_hits + since_fingers.search(prints, k), k)
        candidates = {h.person_id for h in face_hits} | {h.person_id for h in finger_hits}
        if not candidates:
            return []
        alive = set(session.scalars(select(Person.id).where(Person.id.in_(candidates))))
        for gone in candidates - alive:
            self._forget(gone)
        matchers = {p: fp.FingerprintMatcher(t) for p, t in probe_fingers.items()}
        persons = [
            (pid, self.fingers.templates(pid), self.faces.templates(pid)) for pid in sorted(alive)
        ]
        if self._comparers is None:
            self._comparers = ThreadPoolExecutor(
                self._settings.dedup_compare_threads, thread_name_prefix="dedup-compare"
            )
        found = list(
            self._comparers.map(
                lambda p: fusion.compare(p[0], matchers, probe_faces, p[1], p[2]), persons
            )
        )
        found.sort(key=lambda c: (-c.llr, c.person_id))
        return found

    # -- decision --------------------------------------------------------------------------
    def _probe(self, e: Enrolment, made: Extraction | None) -> _Probe:
        """The probe's templates: the registry's own, made from the images (``made``), and
        the kiosk's for fingers sent without an image (older kiosks); where each came from."""
        faces = face_templates(self._cipher, e)
        fingers = finger_templates(self._cipher, e)
        if made is None or made.face is None:
            return faces, fingers, {"face": "kiosk", "finger_images": [], "unusable": []}
        for position in made.unusable:
            del fingers[position]
        for position, raw in made.fingers.items():
            t = fp.FingerprintTemplate.from_iso19794_2(raw)
            fingers[position] = dataclasses.replace(t, position=position)
        origin: dict[str, object] = {
            "face": "image",
            "finger_images": sorted(made.fingers),
            "unusable": made.unusable,
        }
        return face.template_from_bytes(made.face), fingers, origin

    def decide(self, enrolment_id: int, made: Extraction | None = None) -> None:
        """Decide one claimed enrolment (status PROCESSING) and commit the outcome. ``made``:
        the registry's templates of its images (``extraction.extract_references``), or a
        finding that rejects the packet; without it, the kiosk's templates are used. A job of
        the batch last searched ahead (``search_ahead``) completes that search."""
        started = time.perf_counter()
        with self._mutex:
            ahead = self._ahead.pop(enrolment_id, None)
            try:
                self._decide(enrolment_id, made, ahead, started)
            finally:
                if not self._ahead:  # the batch is decided
                    self._since = None

    def _decide(
        self, enrolment_id: int, made: Extraction | None, ahead: _Ahead | None, started: float
    ) -> None:
        new: list[FaceReference | FingerReference] = []
        with transaction(self._factory) as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            e = s.get(Enrolment, enrolment_id, with_for_update=True)
            if e is None or e.status != EnrolmentState.PROCESSING:
                return  # decided elsewhere after its lease ran out
            rejected = None if made is None else made.rejected
            try:
                probe_faces, probe_fingers, origin = (
                    self._probe(e, made)
                    if ahead is None
                    else (ahead.faces, ahead.fingers, ahead.origin)
                )
            except (DecryptionError, fp.TemplateFormatError):
                rejected = "unreadable data"
            if rejected is not None:  # not a packet an honest kiosk makes
                e.status, e.reason, e.lease_until = EnrolmentState.REJECTED, rejected, None
                record(s, ACTOR, "enrolment.rejected", "enrolment", e.id, reason=e.reason)
                return
            self._catch_up(s)
            st = self._settings
            thresholds = Thresholds(self.persons, st.dedup_target_fpir, st.dedup_adjudication_fpir)
            found = self.search(s, probe_faces, probe_fingers, ahead)
            best = found[0] if found else None
            outcome, reason = fusion.decide(best, thresholds)
            if outcome is Outcome.UNIQUE and e.policy_hold:
                # the capture evidence fell short (intake policy "adjudicate"): a person
                # decides before an identifier is issued
                outcome, reason = Outcome.ADJUDICATION, f"policy:{e.policy_hold}"[:200]
            e.match_score = None if best is None else best.llr
            e.lease_until = None
            e.evidence = json.dumps(
                {
                    "outcome": outcome.value,
                    "reason": reason,
                    "thresholds": thresholds.evidence(),
                    "algorithms": {"face": face.ALGORITHM, "finger": fp.ALGORITHM},
                    "probe": {
                        "faces": len(probe_faces),
                        "fingers": sorted(probe_fingers),
                        **origin,
                    },
                    "candidates": [
                        {"rank": i + 1, **c.evidence()}
                        for i, c in enumerate(found[:_EVIDENCE_CANDIDATES])
                    ],
                }
            )
            candidate = None if best is None else best.person_id
            if outcome is Outcome.UNIQUE:
                new = self._issue(s, e, probe_faces, probe_fingers)
            elif outcome is Outcome.DUPLICATE:
                e.status, e.person_id = EnrolmentState.DUPLICATE, candidate
            else:
                e.status = EnrolmentState.ADJUDICATION
                s.add(
                    AdjudicationCase(
                        enrolment_id=e.id,
                        candidate_person_id=candidate,
                        score=e.match_score if e.match_score is not None else 0.0,
                        reason=reason,
                        probe=self._cipher.encrypt(
                            probe_to_bytes(probe_faces, probe_fingers), probe_context(e.id)
                        ),
                    )
                )
            record(
                s,
                ACTOR,
                f"enrolment.{e.status}",
                "enrolment",
                e.id,
                score=None if best is None else round(best.llr, 3),
                candidate=candidate,
            )
            # logged before the commit: whoever reads the decision finds it logged
            log.info(
                "enrolment %s -> %s in %.1f ms (%d persons)",
                e.packet_id,
                e.status,
                (time.perf_counter() - started) * 1e3,
                self.persons,
            )
        # committed: only now may the new references join this process's galleries
        if new:
            person_id = new[0].person_id
            self._add_face(person_id, probe_faces)
            self._add_fingers(person_id, list(probe_fingers.values()), None)
            for r in new:
                model = type(r)
                self._watermarks[model] = max(self._watermarks[model], r.id)

    def issue_adjudicated(
        self,
        enrolment_id: int,
        probe: tuple[np.ndarray, dict[int, fp.FingerprintTemplate]],
        known: set[int],
        actor: str,
        then: Callable[[Session, Enrolment, Comparison | None], None],
    ) -> None:
        """Adjudicators found the enrolment (status ADJUDICATION) to be no one of ``known``
        (the candidates they were shown): issue its IDCS, unless a search of the gallery now
        proposes someone else at or above the adjudication threshold (a person enrolled
        since the case was opened). ``then(session, enrolment, newcomer)`` runs in the same
        transaction, the person issued (``newcomer`` None) or not (the newcomer to show
        them); the decision and the issuance commit together, serialised with every other
        dedup decision."""
        faces, fingers = probe
        new: list[FaceReference | FingerReference] = []
        with self._mutex:
            with transaction(self._factory) as s:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                e = s.get(Enrolment, enrolment_id, with_for_update=True)
                if e is None or e.status != EnrolmentState.ADJUDICATION:
                    raise InvalidRequest("the enrolment is no longer under adjudication")
                self._catch_up(s)
                st = self._settings
                thresholds = Thresholds(
                    self.persons, st.dedup_target_fpir, st.dedup_adjudication_fpir
                )
                newcomer = next(
                    (
                        c
                        for c in self.search(s, faces, fingers)
                        if c.llr >= thresholds.adjudication and c.person_id not in known
                    ),
                    None,
                )
                if newcomer is None:
                    new = self._issue(s, e, faces, fingers, actor)
                then(s, e, newcomer)
            if new:
                person_id = new[0].person_id
                self._add_face(person_id, faces)
                self._add_fingers(person_id, list(fingers.values()), None)
                for r in new:
                    model = type(r)
                    self._watermarks[model] = max(self._watermarks[model], r.id)

    def _issue(
        self,
        s: Session,
        e: Enrolment,
        probe_faces: np.ndarray,
        probe_fingers: dict[int, fp.FingerprintTemplate],
        actor: str = ACTOR,
    ) -> list[FaceReference | FingerReference]:
        """A new person with an IDCS; the probe's templates become their references."""
        person = issue_person(s, self._policy, actor)
        refs: list[FaceReference | FingerReference] = [
            FaceReference(
                person_id=person.id,
                enrolment_id=e.id,
                algorithm=face.ALGORITHM,
                template=self._cipher.encrypt(face.template_to_bytes(t), face_context(person.id)),
            )
            for t in probe_faces
        ]
        refs += [
            finger_reference(self._cipher, person.id, e.id, t)
            for _, t in sorted(probe_fingers.items())
        ]
        s.add_all(refs)
        s.flush()
        e.status, e.person_id = EnrolmentState.ISSUED, person.id
        record(s, actor, "idcs.issued", "person", person.id, enrolment=e.id)
        return refs


def backfill_finger_references(
    factory: sessionmaker[Session], cipher: FieldCipher, batch: int = 200
) -> Iterator[int]:
    """Give persons issued before the registry kept finger references (migration 0005) the
    fingers of the enrolment that issued them, ``batch`` persons per transaction; yields the
    running count after each. Resumable: killed, it is run again and takes up where the last
    committed batch ended (a person with finger references is never taken twice)."""
    done = last = 0
    while True:
        with transaction(factory) as s:
            issued = list(
                s.scalars(
                    select(Enrolment)
                    .where(
                        Enrolment.id > last,  # one with no fingers at all is passed by
                        Enrolment.status == EnrolmentState.ISSUED,
                        Enrolment.person_id.is_not(None),
                        ~select(FingerReference.id)
                        .where(FingerReference.person_id == Enrolment.person_id)
                        .exists(),
                    )
                    .order_by(Enrolment.id)
                    .limit(batch)
                )
            )
            if not issued:
                return
            for e in issued:
                assert e.person_id is not None
                fingers = finger_templates(cipher, e)
                s.add_all(
                    finger_reference(cipher, e.person_id, e.id, t)
                    for _, t in sorted(fingers.items())
                )
                if fingers:
                    record(s, ACTOR, "fingers.backfilled", "person", e.person_id, enrolment=e.id)
            done, last = done + len(issued), issued[-1].id
        yield done


@dataclasses.dataclass
class RetemplateProgress:
    """How far :func:`retemplate` has come (running totals)."""

    persons: int = 0  # persons looked at
    faces: int = 0  # face references made
    fingers: int = 0  # finger references made
    no_images: int = 0  # persons with old-version fingers and no finger images to remake them
    failed: int = 0  # images that gave no template (the person lacks that reference now)


def retemplate(
    factory: sessionmaker[Session], cipher: FieldCipher, batch: int = 50
) -> Iterator[RetemplateProgress]:
    """Make current-algorithm references (``face.ALGORITHM``, ``fp.ALGORITHM``) for every
    person who lacks them, from the images of the enrolment that issued them, ``batch`` persons
    per transaction; yields the running totals after each.

    Run it with a new algorithm's release before the registry decides with it: the galleries
    load only current-algorithm references, so a person not yet remade is not searched (old and
    new templates are never compared). Old references are kept (a rollback needs them).
    Resumable: killed, it is run again and takes up where the last committed batch ended (a
    person is only remade for a modality it has no current reference of). Fingers sent without
    images (older kiosks) cannot be remade: such persons are counted in ``no_images``."""
    progress = RetemplateProgress()
    last = 0
    lacks_face = ~(
        select(FaceReference.id)
        .where(FaceReference.person_id == Person.id, FaceReference.algorithm == face.ALGORITHM)
        .exists()
    )
    old_fingers = (
        select(FingerReference.id)
        .where(FingerReference.person_id == Person.id, FingerReference.algorithm != fp.ALGORITHM)
        .exists()
    )
    current_fingers = (
        select(FingerReference.id)
        .where(FingerReference.person_id == Person.id, FingerReference.algorithm == fp.ALGORITHM)
        .exists()
    )
    while True:
        with transaction(factory) as s:
            persons = list(
                s.scalars(
                    select(Person.id)
                    .where(Person.id > last, lacks_face | (old_fingers & ~current_fingers))
                    .order_by(Person.id)
                    .limit(batch)
                )
            )
            if not persons:
                return
            for person_id in persons:
                _retemplate_person(s, cipher, person_id, progress)
            progress.persons += len(persons)
            last = persons[-1]
        yield dataclasses.replace(progress)


def _retemplate_person(
    s: Session, cipher: FieldCipher, person_id: int, progress: RetemplateProgress
) -> None:
    e = s.scalar(
        select(Enrolment)
        .where(Enrolment.person_id == person_id, Enrolment.status == EnrolmentState.ISSUED)
        .order_by(Enrolment.id)
        .limit(1)
    )
    if e is None:
        return
    has = {
        model: s.scalar(
            select(model.id)
            .where(model.person_id == person_id, model.algorithm == algorithm)
            .limit(1)
        )
        is not None
        for model, algorithm in ((FaceReference, face.ALGORITHM), (FingerReference, fp.ALGORITHM))
    }
    refs: list[FaceReference | FingerReference] = []
    if not has[FaceReference]:
        try:
            image = cipher.decrypt(e.face_image, ctx(e.kiosk_id, e.packet_id, "face_image"))
            template = face_template(image)
        except face.FaceError:
            progress.failed += 1
        else:
            refs.append(
                FaceReference(
                    person_id=person_id,
                    enrolment_id=e.id,
                    algorithm=face.ALGORITHM,
                    template=cipher.encrypt(
                        face.template_to_bytes(template), face_context(person_id)
                    ),
                )
            )
    if not has[FingerReference]:
        images = finger_images(cipher, e)
        if not images:
            progress.no_images += 1
        for position, data in sorted(images.items()):
            try:
                t = finger_template(data, position)
            except (fp.FingerImageError, fp.FingerprintError):
                progress.failed += 1
                continue
            refs.append(finger_reference(cipher, person_id, e.id, t))
    progress.faces += sum(isinstance(r, FaceReference) for r in refs)
    progress.fingers += sum(isinstance(r, FingerReference) for r in refs)
    s.add_all(refs)
    if refs:
        record(s, ACTOR, "references.remade", "person", person_id, enrolment=e.id)
