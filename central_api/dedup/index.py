"""The face gallery: exact 1:N search (faiss ``IndexFlatIP``) over L2-normalised templates."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from biometrics import face


def normalise(templates: np.ndarray) -> np.ndarray:
    """Rows as contiguous float32 with unit L2 norm (inner product = cosine similarity)."""
    x = np.ascontiguousarray(np.atleast_2d(templates), dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms < 1e-12):
        raise ValueError("templates must be finite and non-zero")
    return np.asarray(x / norms, dtype=np.float32)


@dataclass(frozen=True)
class Hit:
    """A registered person and their best similarity to any probe template."""

    person_id: int
    score: float


class FaceGallery:
    """Face references of registered persons, searchable by cosine similarity.

    Keys are ``face_references.id``; ``watermark`` is the highest key loaded, so a catch-up
    from the database loads only what is newer. Not thread-safe: the caller serialises.
    """

    def __init__(self, dim: int = face.TEMPLATE_DIM) -> None:
        # faiss switches from its own loop to BLAS at 20 queries by default; its loop is 7-9x
        # slower than BLAS for the small batches a dedup queue produces, so always use BLAS.
        # (A process-wide faiss option: set where the index is built, not on import.)
        faiss.cvar.distance_compute_blas_threshold = 1
        self.dim = dim
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._owner: dict[int, int] = {}
        self.watermark = 0

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ref_ids: list[int], person_ids: list[int], templates: np.ndarray) -> None:
        """Add references (templates are normalised here)."""
        if not ref_ids:
            return
        vectors = normalise(templates)
        if vectors.shape != (len(ref_ids), self.dim) or len(person_ids) != len(ref_ids):
            raise ValueError("ref_ids, person_ids and templates do not line up")
        self._index.add_with_ids(vectors, np.asarray(ref_ids, dtype=np.int64))
        self._owner.update(zip(ref_ids, person_ids, strict=True))
        self.watermark = max(self.watermark, *ref_ids)

    def remove_person(self, person_id: int) -> int:
        """Drop every reference of one person; returns how many were dropped."""
        refs = [r for r, p in self._owner.items() if p == person_id]
        if refs:
            # faiss's stubs know only remove_ids(IDSelector); its SWIG wrapper takes ids too
            self._index.remove_ids(np.asarray(refs, dtype=np.int64))  # type: ignore[arg-type]
            for r in refs:
                del self._owner[r]
        return len(refs)

    def search(self, probes: np.ndarray, k: int) -> list[Hit]:
        """Best score per person over all probe templates, best first (at most k persons)."""
        if len(self) == 0:
            return []
        q = normalise(probes)
        scores, ids = self._index.search(q, min(len(self), k * 4))
        best: dict[int, float] = {}
        for s, r in zip(scores.ravel(), ids.ravel(), strict=True):
            if r < 0:
                continue
            p = self._owner[int(r)]
            if float(s) > best.get(p, -2.0):
                best[p] = float(s)
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]
        return [Hit(p, s) for p, s in ranked]
