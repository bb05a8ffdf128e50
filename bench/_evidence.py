"""What the benchmarks' packets carry: invented demographics, and what satisfies the
registry's intake policy (capture evidence of a chip read and a live face, ten ISO/IEC
19794-2 finger templates)."""

from __future__ import annotations

import numpy as np

from biometrics import fingerprint as fp
from central_api.enrolment.schemas import CaptureInfo, Demographics, Document, FingerprintRecord


def demographics(number: str = "AB000001") -> Demographics:
    """An invented person with a CNIE of ``number``."""
    return Demographics(
        surname_latin="Tazi",
        given_names_latin="Amina",
        date_of_birth="1990-01-01",
        place_of_birth="Rabat",
        sex="F",
        nationality="MAR",
        address="1 Rue X, Rabat",
        document=Document(type="CNIE", number=number, issuing_country="MAR"),
    )


def evidence(person: int = 0) -> dict[str, object]:
    """``build_packet`` keywords: ``capture`` and the ``fingerprints`` of ``person`` (random
    minutiae drawn from that seed: the dedup finds two packets with the same to be one)."""
    rng = np.random.default_rng(person)
    fingers = []
    for pos in range(1, 11):
        minutiae = tuple(
            fp.Minutia(
                int(rng.integers(20, 380)),
                int(rng.integers(20, 480)),
                float(rng.uniform(0, 6.28)),
                "ending",
                60,
            )
            for _ in range(40)
        )
        t = fp.FingerprintTemplate(400, 500, minutiae, position=pos)
        fingers.append(FingerprintRecord(position=pos, quality=70, data=t.to_iso19794_2()))
    capture = CaptureInfo(
        document_source="chip",
        passive_authentication="valid",
        face_quality=80,
        face_liveness=True,
        face_document_similarity=0.95,
        language="fr",
    )
    return {"capture": capture, "fingerprints": fingers}
