"""Galleries: the enrolled persons' references, searched 1:N for candidates.

One protocol, :class:`Gallery` (add a person's templates, remove a person, search probes ->
best persons), implemented by :class:`FaceGallery` (exact cosine search, faiss) and
:class:`FingerGallery` (a pre-selection by Hamming distance over 256-bit codes of the
fingers' cylinder descriptors, faiss's binary index, one per finger position; a probe finger
is searched at its own position and at its mirror's, so a finger captured under the other
hand's position is still found). A gallery only
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

    def search_many(self, probe_sets: Sequence[Sequence[T]], k: int) -> list[list[Hit]]:
        """``search`` of several probe sets (a batch of enrolments) in one index scan."""
        ...


def merge(hits: Sequence[Hit], k: int) -> list[Hit]:
    """The ``k`` best of hits from searches of one gallery's parts (a person in more than one
    part counts with their best score), best first."""
    best: dict[int, float] = {}
    for h in hits:
        best[h.person_id] = max(h.score, best.get(h.person_id, -np.inf))
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [Hit(p, s) for p, s in ranked]


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
        return self.search_many([probes], k)[0]

    def search_many(
        self, probe_sets: Sequence[Sequence[np.ndarray] | np.ndarray], k: int
    ) -> list[list[Hit]]:
        """``search`` of each probe set, all of their templates in one faiss search."""
        sizes = [len(p) for p in probe_sets]
        if len(self) == 0 or not any(sizes):
            return [[] for _ in probe_sets]
        queries = normalise(np.concatenate([np.atleast_2d(p) for p in probe_sets if len(p)]))
        scores, ids = self._index.search(queries, min(len(self), k * 4))
        out, start = [], 0
        for size in sizes:
            hits = [
                Hit(self._owner[int(r)], float(sc))
                for row_ids, row_scores in zip(
                    ids[start : start + size], scores[start : start + size], strict=True
                )
                for r, sc in zip(row_ids, row_scores, strict=True)
                if r >= 0
            ]
            out.append(merge(hits, k))
            start += size
        return out


_CODE_BYTES = fp.CODE_BITS // 8
_PERSON_BYTES = 10 * _CODE_BYTES + 10  # a person's ten codes, then which positions are held


class _Codes:
    """The index codes of one finger position: a faiss binary index whose rows are fingers,
    and which person each row belongs to (-1: removed or replaced, dropped before a search)."""

    def __init__(self) -> None:
        import faiss  # lazy: no work at import time

        self.index = faiss.IndexBinaryFlat(fp.CODE_BITS)
        self.owner = np.zeros(1024, np.int64)
        self.rows = 0
        self.stale = 0

    def add(self, person_id: int, code: np.ndarray) -> None:
        if self.rows == len(self.owner):  # grown by a quarter: appending stays amortised O(1)
            # (at least 1024 rows: a compacted index holds exactly its rows, maybe none)
            self.owner = np.resize(self.owner, max(1024, self.rows + self.rows // 4))
        self.owner[self.rows] = person_id  # the owner first: a failed add leaves no orphan row
        self.index.add(code[None])
        self.rows += 1

    def drop(self, person_id: int) -> None:
        rows = np.flatnonzero(self.owner[: self.rows] == person_id)
        self.owner[rows] = -1
        self.stale += len(rows)

    def compact(self) -> None:
        """Rebuild the index without the rows of removed or replaced fingers."""
        if not self.stale:
            return
        live = self.owner[: self.rows] >= 0
        codes = self.index.reconstruct_n(0, self.index.ntotal)[live]
        self.index.reset()
        self.index.add(np.ascontiguousarray(codes))
        self.owner = self.owner[: self.rows][live]
        self.rows = len(self.owner)
        self.stale = 0


class FingerGallery:
    """Finger templates of enrolled persons, indexed by their 256-bit codes.

    Each finger position has its own index (faiss's binary flat index) of its fingers'
    ``fingerprint.index_code`` (32 bytes, signs of random projections of the centred cylinder
    descriptor). A probe finger is searched in its position's index and in its mirror's (the
    same finger of the other hand, in case the hands were swapped: the fusion compares both)
    by Hamming distance; every person with a finger among the ``depth`` nearest of any probe
    finger is then scored on all of their codes: for each probe finger, the better similarity
    (``1 - 2 d / bits``, an estimate of the descriptors' cosine; nothing below 0) of the
    person's finger at its position and at its mirror, summed over the probe fingers. (A
    mate's finger that missed the depth still counts: the sum is the person's whole evidence,
    not what the nearest lists happened to hold.) The templates are kept as their ISO/IEC
    19794-2 records (a few hundred bytes a finger) and parsed only for the candidates.
    Approximate: it only pre-selects the persons whose fingers are then compared in full
    (``templates``).
    """

    def __init__(self, depth: int = 256) -> None:
        self.depth = depth
        self._codes: dict[int, _Codes] = {int(p): _Codes() for p in fp.FingerPosition}
        self._records: dict[int, dict[int, bytes]] = {}
        # each person's codes, for scoring the persons the nearest lists name: one bytes
        # object a person (_PERSON_BYTES, not a dict per position): the ten positions' codes
        # in order (zeros where none is held), then a byte a position, 1 where held
        self._person_codes: dict[int, bytes] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def templates(self, person_id: int) -> dict[int, fp.FingerprintTemplate]:
        """A person's finger templates by ISO finger position (empty: none held)."""
        return {
            position: dataclasses.replace(
                fp.FingerprintTemplate.from_iso19794_2(r), position=position
            )
            for position, r in self._records.get(person_id, {}).items()
        }

    def add(
        self,
        person_id: int,
        templates: Sequence[fp.FingerprintTemplate],
        codes: np.ndarray | None = None,
    ) -> None:
        """Add a person's fingers; each template's ``position`` must be set (1-10), and a
        position already held for the person is replaced. ``codes``: their index codes when
        already known (stored beside the references), else they are computed (about 4 ms a
        finger: the cylinders are built)."""
        if not templates:
            return
        for t in templates:
            if not 1 <= t.position <= 10:
                raise ValueError("a gallery finger needs its ISO finger position (1-10)")
        if codes is None:
            codes = np.stack([fp.index_code(t) for t in templates])
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(len(templates), -1)
        held = self._records.setdefault(person_id, {})
        mine = bytearray(self._person_codes.get(person_id, bytes(_PERSON_BYTES)))
        for t, code in zip(templates, codes, strict=True):
            at = (t.position - 1) * _CODE_BYTES
            mine[at : at + _CODE_BYTES], mine[10 * _CODE_BYTES + t.position - 1] = code.tobytes(), 1
            if t.position in held:  # rare (a person's references loaded in two batches)
                self._codes[t.position].drop(person_id)
            else:
                self._count += 1
            held[t.position] = t.to_iso19794_2()
            self._codes[t.position].add(person_id, code)
        self._person_codes[person_id] = bytes(mine)

    def remove(self, person_id: int) -> int:
        """Drop every finger of one person; returns how many were dropped."""
        held = self._records.pop(person_id, {})
        self._person_codes.pop(person_id, None)
        for position in held:
            self._codes[position].drop(person_id)
        self._count -= len(held)
        return len(held)

    def search(self, probes: Sequence[fp.FingerprintTemplate], k: int) -> list[Hit]:
        """The ``k`` persons whose fingers' codes are nearest the probes', best first."""
        return self.search_many([probes], k)[0]

    def search_many(
        self, probe_sets: Sequence[Sequence[fp.FingerprintTemplate]], k: int
    ) -> list[list[Hit]]:
        """``search`` of each probe set: one faiss search per finger position for all of
        their fingers."""
        if not self._records or not any(probe_sets):
            return [[] for _ in probe_sets]
        # every probe finger: (its set, its position, its code)
        fingers = [
            (i, t.position, fp.index_code(t)) for i, probes in enumerate(probe_sets) for t in probes
        ]
        named: list[set[int]] = [set() for _ in probe_sets]  # persons a nearest list named
        for position, index in self._codes.items():
            asked = [f for f in fingers if position in (f[1], fp.FingerPosition(f[1]).mirror())]
            index.compact()
            if not asked or not index.rows:  # (every finger held here may have been removed)
                continue
            depth = min(index.index.ntotal, max(self.depth, 4 * k))
            dist, rows = index.index.search(np.stack([f[2] for f in asked]), depth)
            for (i, _, _), found, d in zip(asked, rows, dist, strict=True):
                # from a similarity of 0 on (d = bits / 2) a finger adds nothing to a score
                found = found[(found >= 0) & (d < fp.CODE_BITS // 2)]
                named[i].update(index.owner[found].tolist())  # compacted: every row is live
        out: list[list[Hit]] = []
        for i in range(len(probe_sets)):
            persons = sorted(named[i])
            if not persons:
                out.append([])
                continue
            held = np.frombuffer(b"".join(self._person_codes[p] for p in persons), np.uint8)
            held = held.reshape(len(persons), _PERSON_BYTES)
            codes = held[:, : 10 * _CODE_BYTES].reshape(len(persons), 10, _CODE_BYTES)
            has = held[:, 10 * _CODE_BYTES :].astype(bool)
            score = np.zeros(len(persons))
            for _, position, code in (f for f in fingers if f[0] == i):
                best = np.zeros(len(persons))
                for p in (position, fp.FingerPosition(position).mirror()):
                    d = np.bitwise_count(codes[:, p - 1] ^ code).sum(axis=1)
                    best = np.maximum(best, np.where(has[:, p - 1], 1 - 2 * d / fp.CODE_BITS, 0))
                score += best
            out.append(merge([Hit(p, float(v)) for p, v in zip(persons, score, strict=True)], k))
        return out
