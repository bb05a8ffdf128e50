"""The ABIS's search engine: galleries split into shards, searched by fan-out and merge.

A :class:`Shard` holds the face and finger galleries of the references it was given, proposes
candidates (``preselect``) and compares candidates in full (``compare``, the registry's fused
comparison). An identify runs in two rounds over every shard: each proposes its best ``k``
references per modality; the proposals are merged into the best ``k`` of the whole gallery
(:func:`biometrics.gallery.merge`); each shard then compares in full the merged candidates it
holds. A reference lives on shard ``id % shards``.

Two engines, one interface (:class:`Engine`): :class:`LocalEngine` holds its shards in this
process (the embedded default, and the reference the Ray path is tested against), and
:class:`RayEngine` holds each shard in a Ray actor that loads its part of the reference
database when it starts, and again when Ray restarts it after a crash. Both give the same
answers on the same data: the merge is the same code, and a shard's proposals are exact for
faces (faiss exact search) and, for fingers, the gallery's own ranking of its part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from biometrics import fingerprint as fp
from biometrics.gallery import FaceGallery, FingerGallery, Hit, merge
from central_api.abis.exceptions import EngineUnavailable
from central_api.dedup import fusion
from central_api.dedup.fusion import Comparison

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """One reference's templates: ``faces`` (n, 128) float32, ``fingers`` by ISO position,
    ``codes``: the fingers' index codes in ``sorted(fingers)`` order (None: computed)."""

    id: int
    faces: np.ndarray
    fingers: dict[int, fp.FingerprintTemplate] = field(default_factory=dict)
    codes: np.ndarray | None = None


@dataclass(frozen=True)
class Probe:
    """What is searched: face templates and finger templates by position."""

    faces: np.ndarray
    fingers: dict[int, fp.FingerprintTemplate] = field(default_factory=dict)


class Shard:
    """One part of the galleries. Not thread-safe: its owner serialises calls (a Ray actor
    runs one call at a time; :class:`LocalEngine` holds a lock)."""

    def __init__(self) -> None:
        self.faces = FaceGallery()
        self.fingers = FingerGallery()
        self._ids: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, refs: Sequence[Reference]) -> int:
        """Add references (one already held is replaced: adding is idempotent); returns the
        number held."""
        for r in refs:
            if r.id in self._ids:
                self.remove(r.id)
            if len(r.faces):
                self.faces.add(r.id, r.faces)
            if r.fingers:
                prints = [r.fingers[p] for p in sorted(r.fingers)]
                codes = r.codes
                if codes is None:
                    codes = np.stack([fp.index_code(t) for t in prints])
                self.fingers.add(r.id, prints, codes)
            self._ids.add(r.id)
        return len(self._ids)

    def remove(self, ref_id: int) -> bool:
        """Drop a reference; False if it was not held."""
        if ref_id not in self._ids:
            return False
        self.faces.remove(ref_id)
        self.fingers.remove(ref_id)
        self._ids.discard(ref_id)
        return True

    def preselect(self, probe: Probe, k: int) -> tuple[list[Hit], list[Hit]]:
        """The ``k`` references most like the probe by face and by fingers."""
        faces = self.faces.search(probe.faces, k) if len(probe.faces) else []
        prints = [probe.fingers[p] for p in sorted(probe.fingers)]
        fingers = self.fingers.search(prints, k) if prints else []
        return faces, fingers

    def compare(self, probe: Probe, ref_ids: Iterable[int]) -> list[Comparison]:
        """Full fused comparisons of the probe with those of ``ref_ids`` this shard holds."""
        matchers = {p: fp.FingerprintMatcher(t) for p, t in probe.fingers.items()}
        return [
            fusion.compare(
                r, matchers, probe.faces, self.fingers.templates(r), self.faces.templates(r)
            )
            for r in sorted(set(ref_ids) & self._ids)
        ]


def _rank(found: Iterable[Comparison], limit: int | None = None) -> list[Comparison]:
    ranked = sorted(found, key=lambda c: (-c.llr, c.person_id))
    return ranked if limit is None else ranked[:limit]


def fan_out(
    probe: Probe,
    k: int,
    among: Collection[int] | None,
    preselect: Callable[[Probe, int], list[tuple[list[Hit], list[Hit]]]],
    compare: Callable[[Probe, dict[int, list[int]]], list[Comparison]],
    shards: int,
) -> list[Comparison]:
    """The identify both engines run: proposals of every shard merged into the gallery's best
    ``k`` per modality, then each shard's candidates compared in full. ``among``: compare with
    these references only (MOSIP's gallery), without pre-selection. Best first."""
    if among is not None:
        candidates = set(among)
    else:
        proposals = preselect(probe, k)
        faces = merge([h for f, _ in proposals for h in f], k)
        fingers = merge([h for _, g in proposals for h in g], k)
        candidates = {h.person_id for h in faces} | {h.person_id for h in fingers}
    by_shard: dict[int, list[int]] = {}
    for ref_id in candidates:
        by_shard.setdefault(ref_id % shards, []).append(ref_id)
    return _rank(compare(probe, by_shard)) if by_shard else []


class Engine(Protocol):
    """The ABIS's search engine, whatever holds its shards."""

    shards: int

    def add(self, refs: Sequence[Reference]) -> None:
        """Hold these references (each on its shard)."""
        ...

    def remove(self, ref_id: int) -> None:
        """Forget a reference."""
        ...

    def identify(
        self, probe: Probe, k: int, among: Collection[int] | None = None
    ) -> list[Comparison]:
        """The candidates compared in full, best first."""
        ...

    def size(self) -> int:
        """References held."""
        ...

    def close(self) -> None:
        """Release what the engine holds."""
        ...


class LocalEngine:
    """Shards in this process (one by default): the embedded ABIS."""

    def __init__(self, shards: int = 1) -> None:
        import threading

        self.shards = shards
        self._parts = [Shard() for _ in range(shards)]
        self._lock = threading.Lock()

    def add(self, refs: Sequence[Reference]) -> None:
        with self._lock:
            for i, part in enumerate(self._parts):
                part.add([r for r in refs if r.id % self.shards == i])

    def remove(self, ref_id: int) -> None:
        with self._lock:
            self._parts[ref_id % self.shards].remove(ref_id)

    def identify(
        self, probe: Probe, k: int, among: Collection[int] | None = None
    ) -> list[Comparison]:
        with self._lock:
            return fan_out(
                probe,
                k,
                among,
                lambda p, kk: [s.preselect(p, kk) for s in self._parts],
                lambda p, ids: [c for i, r in ids.items() for c in self._parts[i].compare(p, r)],
                self.shards,
            )

    def size(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._parts)

    def close(self) -> None:
        return None


# -- Ray ----------------------------------------------------------------------------------------
class ShardHost:
    """A shard in a Ray actor: on start (and on every restart after a crash) it loads its part
    of the reference database (``loader(index, shards)`` yields batches of references)."""

    def __init__(
        self, index: int, shards: int, loader: Callable[[int, int], Iterable[list[Reference]]]
    ) -> None:
        self.index, self._shards = index, shards
        self.shard = Shard()
        for batch in loader(index, shards):
            self.shard.add(batch)
        log.info("shard %d/%d loaded %d references", index, shards, len(self.shard))

    def add(self, refs: list[Reference]) -> int:
        return self.shard.add(refs)

    def remove(self, ref_id: int) -> bool:
        return self.shard.remove(ref_id)

    def preselect(self, probe: Probe, k: int) -> tuple[list[Hit], list[Hit]]:
        return self.shard.preselect(probe, k)

    def compare(self, probe: Probe, ref_ids: list[int]) -> list[Comparison]:
        return self.shard.compare(probe, ref_ids)

    def size(self) -> int:
        return len(self.shard)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayEngine:
    """Shards held by named Ray actors (``rnp-abis-shard-<i>`` in namespace ``namespace``),
    found if they exist (another worker process started them), started otherwise. Actors are
    detached (they outlive the process that started them), restarted by Ray when they die
    (``max_restarts=-1``), and their calls retried on the restarted actor: every call is
    idempotent. ``loader`` must be picklable (a module-level function or a partial of one)."""

    def __init__(
        self,
        shards: int,
        loader: Callable[[int, int], Iterable[list[Reference]]],
        *,
        address: str | None = None,
        namespace: str = "rnp-abis",
        cpus_per_shard: float = 0.5,
    ) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(
                address=address,
                namespace=namespace,
                log_to_driver=False,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        self._ray = ray
        self.shards = shards
        host: Any = ray.remote(ShardHost)
        self._actors: list[Any] = [
            host.options(
                name=f"rnp-abis-shard-{i}",
                namespace=namespace,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=-1,
                num_cpus=cpus_per_shard,
            ).remote(i, shards, loader)
            for i in range(shards)
        ]

    def _get(self, refs: Any, timeout: float = 600.0) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(refs, timeout=timeout)
        except RayTaskError as exc:  # the call itself failed in the shard: a fault, not away
            raise RuntimeError(f"a gallery shard failed a call: {exc.cause!r}") from exc
        except Exception as exc:  # RayActorError, GetTimeoutError, a lost node
            raise EngineUnavailable(f"the gallery shards cannot be reached: {exc!r}") from exc

    def add(self, refs: Sequence[Reference]) -> None:
        calls = []
        for i, actor in enumerate(self._actors):
            part = [r for r in refs if r.id % self.shards == i]
            if part:
                calls.append(actor.add.remote(part))
        self._get(calls)

    def remove(self, ref_id: int) -> None:
        self._get(self._actors[ref_id % self.shards].remove.remote(ref_id))

    def identify(
        self, probe: Probe, k: int, among: Collection[int] | None = None
    ) -> list[Comparison]:
        probe_ref = self._ray.put(probe)

        def preselect(_: Probe, kk: int) -> list[tuple[list[Hit], list[Hit]]]:
            return list(self._get([a.preselect.remote(probe_ref, kk) for a in self._actors]))

        def compare(_: Probe, ids: dict[int, list[int]]) -> list[Comparison]:
            parts = self._get(
                [self._actors[i].compare.remote(probe_ref, sorted(r)) for i, r in ids.items()]
            )
            return [c for part in parts for c in part]

        return fan_out(probe, k, among, preselect, compare, self.shards)

    def size(self) -> int:
        return int(sum(self._get([a.size.remote() for a in self._actors])))

    def pids(self) -> list[int]:
        """The actors' process ids (tests kill one)."""
        return [int(p) for p in self._get([a.pid.remote() for a in self._actors])]

    def close(self) -> None:
        """Leave the actors running (other workers use them); ``shutdown`` stops them."""
        return None

    def shutdown(self) -> None:
        """Stop the actors (their galleries are rebuilt from the database when started again)."""
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
