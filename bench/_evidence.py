"""What the benchmarks' packets carry: invented demographics, and what satisfies the
registry's intake policy (capture evidence of a chip read and a live face, ten ISO/IEC
19794-2 finger templates)."""

from __future__ import annotations

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


def evidence() -> dict[str, object]:
    """``build_packet`` keywords: ``capture`` and ``fingerprints``."""
    minutiae = tuple(fp.Minutia(20 + 7 * i, 30 + 9 * i, 0.1 * i, "ending", 60) for i in range(40))
    fingers = [
        FingerprintRecord(
            position=pos,
            quality=70,
            data=fp.FingerprintTemplate(400, 500, minutiae, position=pos).to_iso19794_2(),
        )
        for pos in range(1, 11)
    ]
    capture = CaptureInfo(
        document_source="chip",
        passive_authentication="valid",
        face_quality=80,
        face_liveness=True,
        face_document_similarity=0.95,
        language="fr",
    )
    return {"capture": capture, "fingerprints": fingers}
