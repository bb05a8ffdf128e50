"""Galleries: the enrolled persons' references, searched 1:N for candidates.

One protocol, :class:`Gallery` (add a person's templates, remove a person, search probes ->
best persons), implemented by :class:`FaceGallery` (exact cosine search, faiss) and
:class:`FingerGallery` (a pre-selection over cylinder descriptors, every finger position
searched, so a finger captured under the wrong position is still found). A gallery only
proposes candidates: decisions rest on full comparisons (``face.compare``,
``fingerprint.FingerprintMatcher``). Not thread-safe: the caller serialises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from biometrics import face
from biometrics import fingerprint as fp

T = TypeVar("T", contravariant=True)


@dataclass(frozen=True)
class Hit:
    """A person proposed by a search, with the gallery's similarity (higher: more alike;
    comparable only within one gallery)."""

    person_id: int
    score: float


class Gallery(Protocol[T]):
    """What every gallery does."""

    def __len__(self) -> int:
        """How many templates it holds."""
        ...

    def add(self, person_id: int, templates: Sequence[T]) -> None:
        """Add a person's templates (again: more templates of the same person)."""
        ...

    def remove(self, person_id: int) -> int:
        """Drop every template of a person; returns how many were dropped."""
        ...

    def search(self, probes: Sequence[T], k: int) -> list[Hit]:
        """The ``k`` persons most like the probes, best first."""
        ...


def normalise(templates: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Rows as contiguous float32 with unit L2 norm (inner product = cosine similarity)."""
    x = np.ascontiguousarray(np.atleast_2d(np.asarray(templates)), dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms < 1e-12):
        raise ValueError("templates must be finite and non-zero")
    return np.asarray(x / norms, dtype=np.float32)


class FaceGallery:
    """Face templates of enrolled persons, exact cosine search (faiss ``IndexFlatIP``)."""

    def __init__(self, dim: int = face.TEMPLATE_DIM) -> None:
        import faiss

        # faiss switches from its own loop to BLAS at 20 queries by default; its loop is 7-9x
        # slower than BLAS for the small batches a dedup queue produces, so always use BLAS.
        # (A process-wide faiss option: set where the index is built, not on import.)
        faiss.cvar.distance_compute_blas_threshold = 1
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._owner: dict[int, int] = {}  # faiss id -> person
        self._templates: dict[int, list[np.ndarray]] = {}
        self._next = 0

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, person_id: int, templates: Sequence[np.ndarray] | np.ndarray) -> None:
        """Add a person's face templates (normalised here)."""
        if len(templates) == 0:
            return
        vectors = normalise(templates)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"face templates have {self.dim} values, not {vectors.shape[1]}")
        ids = np.arange(self._next, self._next + len(vectors), dtype=np.int64)
        self._next += len(vectors)
        self._index.add_with_ids(vectors, ids)
        self._owner.update(dict.fromkeys(ids.tolist(), person_id))
        self._templates.setdefault(person_id, []).extend(vectors)

    def templates(self, person_id: int) -> np.ndarray:
        """A person's face templates, (n, dim) unit rows (n = 0: none held)."""
        held = self._templates.get(person_id)
        return np.stack(held) if held else np.zeros((0, self.dim), np.float32)

    def remove(self, person_id: int) -> int:
        """Drop every template of one person; returns how many were dropped."""
        refs = [r for r, p in self._owner.items() if p == person_id]
        if refs:
            # faiss's stubs know only remove_ids(IDSelector); its SWIG wrapper takes ids too
            self._index.remove_ids(np.asarray(refs, dtype=np.int64))  # type: ignore[arg-type]
            for r in refs:
                del self._owner[r]
        self._templates.pop(person_id, None)
        return len(refs)

    def search(self, probes: Sequence[np.ndarray] | np.ndarray, k: int) -> list[Hit]:
        """Best cosine similarity per person over all probe templates, best first."""
        if len(self) == 0 or len(probes) == 0:
            return []
        scores, ids = self._index.search(normalise(probes), min(len(self), k * 4))
        best: dict[int, float] = {}
        for s, r in zip(scores.ravel(), ids.ravel(), strict=True):
            if r >= 0:
                p = self._owner[int(r)]
                best[p] = max(float(s), best.get(p, -2.0))
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]
        return [Hit(p, s) for p, s in ranked]


class FingerGallery:
    """Finger templates of enrolled persons, searched by their cylinder descriptors.

    Each finger is a row of descriptors (the mean of its Minutia Cylinder-Code cylinders, unit
    length); similarity is the cosine after removing the gallery's mean descriptor. A probe
    finger is compared with every finger of every person, whatever its position (a left
    index captured as the right one is still found); a person's score is the sum over the
    probe fingers of their best similarity to that person's fingers. Approximate: it only
    pre-selects the persons whose fingers are then compared in full (``templates``).
    """

    def __init__(self) -> None:
        self._desc = np.zeros((0, fp.DESCRIPTOR_SIZE), np.float32)
        self._owner = np.zeros(0, np.int64)  # row -> person (-1: removed)
        self._rows = 0
        self._fingers: dict[int, dict[int, fp.FingerprintTemplate]] = {}
        self._prepared: _Prepared | None = None

    def __len__(self) -> int:
        return sum(len(f) for f in self._fingers.values())

    def templates(self, person_id: int) -> dict[int, fp.FingerprintTemplate]:
        """A person's finger templates by ISO finger position (empty: none held)."""
        return dict(self._fingers.get(person_id, {}))

    def add(self, person_id: int, templates: Sequence[fp.FingerprintTemplate]) -> None:
        """Add a person's fingers; each template's ``position`` must be set (1-10), and a
        position already held for the person is replaced."""
        if not templates:
            return
        held = self._fingers.setdefault(person_id, {})
        for t in templates:
            if not 1 <= t.position <= 10:
                raise ValueError("a gallery finger needs its ISO finger position (1-10)")
            # a copy without the search structure the template may carry (about 25 KB of
            # cylinders a finger): only candidates' fingers build theirs, when compared
            held[t.position] = dataclasses.replace(t)
        self._drop_rows(person_id)
        new = np.stack([fp.descriptor(dataclasses.replace(t)) for t in held.values()])
        if self._rows + len(new) > len(self._desc):
            grow = max(len(self._desc) + len(self._desc) // 4, self._rows + len(new), 1024)
            self._desc = np.resize(self._desc, (grow, fp.DESCRIPTOR_SIZE))
            self._owner = np.resize(self._owner, grow)
        self._desc[self._rows : self._rows + len(new)] = new
        self._owner[self._rows : self._rows + len(new)] = person_id
        self._rows += len(new)
        self._prepared = None

    def _drop_rows(self, person_id: int) -> None:
        rows = np.flatnonzero(self._owner[: self._rows] == person_id)
        self._owner[rows] = -1
        self._desc[rows] = 0.0

    def remove(self, person_id: int) -> int:
        """Drop every finger of one person; returns how many were dropped."""
        held = self._fingers.pop(person_id, {})
        if held:
            self._drop_rows(person_id)
            self._prepared = None
        return len(held)

    def search(self, probes: Sequence[fp.FingerprintTemplate], k: int) -> list[Hit]:
        """The ``k`` persons whose fingers' descriptors are most like the probes', best first."""
        if not probes or not self._fingers:
            return []
        ready = self._prepare()
        q = np.stack([fp.descriptor(t) for t in probes]) - ready.centre
        sims = (q @ ready.desc.T) / ready.norms  # (probes, fingers)
        # a person's fingers are consecutive rows: the best of each person, per probe finger
        best = np.maximum.reduceat(sims, ready.starts, axis=1)
        score = np.maximum(best, 0.0).sum(axis=0)
        top = np.argpartition(-score, k)[:k] if k < len(score) else np.arange(len(score))
        top = top[np.argsort(-score[top], kind="stable")]
        return [Hit(int(ready.persons[j]), float(score[j])) for j in top]

    def _prepare(self) -> _Prepared:
        """The live rows, centred (what every finger shares says nothing about identity:
        centring moved mates from a mean rank of 3.4 to 0.6 among 40 fingers), and where
        each person's rows start. Rebuilt after a change, on the next search."""
        if self._prepared is None:
            desc, owner = self._desc[: self._rows], self._owner[: self._rows]
            live = owner >= 0
            if not live.all():  # a copy only when persons were removed
                desc, owner = desc[live], owner[live]
            mu = desc.mean(axis=0)
            norms = np.sqrt(np.maximum(1 - 2 * (desc @ mu) + mu @ mu, 1e-12))
            starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            self._prepared = _Prepared(desc, mu, norms, starts, owner[starts])
        return self._prepared


@dataclass(frozen=True)
class _Prepared:
    desc: np.ndarray  # (live fingers, DESCRIPTOR_SIZE)
    centre: np.ndarray
    norms: np.ndarray  # of each row once centred
    starts: np.ndarray  # the first row of each person
    persons: np.ndarray  # the person of each run of rows
