"""The registry makes its own templates from the packet's images (ISO/IEC 19794-4 finger
images, the ICAO token face image) and can remake the whole gallery when an algorithm
changes, resumably, never comparing one version's templates with another's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import Registry, capture, count, fingers
from pydantic import ValidationError
from sqlalchemy import select

from biometrics import face
from biometrics import fingerprint as fp
from biometrics.synthetic import fingerprint_impression, master_fingerprint
from central_api.dedup.service import Deduplicator, RetemplateProgress, retemplate
from central_api.enrolment.models import Enrolment
from central_api.enrolment.schemas import FingerException, FingerprintRecord
from central_api.identity.models import FaceReference, FingerReference

POSITIONS = (1, 2, 6)  # three fingers: enough to decide, few enough to extract quickly
# an answer waits for the extraction: a new extraction process loads LEADER first (~40 s)
EXTRACTION_WAIT = 300.0


def _impression(seed: int, impression: int) -> np.ndarray:
    return fingerprint_impression(master_fingerprint(seed), impression, condition="normal")


def _with_images(
    seed: int, impression: int, kiosk_seed: int | None = None
) -> list[FingerprintRecord]:
    """Finger records of person ``seed`` with their images; the kiosk's templates are those of
    person ``kiosk_seed`` when given (a tampered kiosk), else random minutiae all the same:
    the registry must decide on the images alone."""
    kiosk = {f.position: f for f in fingers(seed if kiosk_seed is None else kiosk_seed)}
    return [
        FingerprintRecord(
            position=p,
            quality=70,
            data=kiosk[p].data,
            image=fp.FingerImage(_impression(100 * seed + p, impression), p).to_iso19794_4(),
        )
        for p in POSITIONS
    ]


def _packet(reg: Registry, name: str, template, photo, prints: list[FingerprintRecord]):  # type: ignore[no-untyped-def]
    """A packet of photo ``name`` with these fingers; the others recorded as bandaged."""
    others = [
        FingerException(position=p, reason="bandaged") for p in range(1, 11) if p not in POSITIONS
    ]
    return reg.packet(
        [template(name)],
        photo(name),
        fingerprints=prints,
        capture=capture(finger_exceptions=others),
    )


def test_finger_image_records_round_trip_and_refuse_what_is_broken() -> None:
    pixels = _impression(7, 0)
    for compression in ("WSQ", "PNG", "JPEG2000"):
        data = fp.FingerImage(pixels, 3, 500).to_iso19794_4(compression)
        head = fp.read_image_header(data)
        assert (head.position, head.width, head.height, head.dpi) == (3, 320, 400, 500)
        back = fp.FingerImage.from_iso19794_4(data)
        error = np.abs(back.pixels.astype(int) - pixels).mean()
        assert error == 0 if compression != "WSQ" else 0 < error < 8  # WSQ is lossy, ~15:1
    wsq = fp.FingerImage(pixels, 3).to_iso19794_4()
    assert len(wsq) < pixels.size / 8
    for broken in (wsq[:-10], b"FIR\x00020\x00" + wsq[8:], wsq[:8] + b"\xff" * (len(wsq) - 8)):
        with pytest.raises(fp.FingerImageError):
            fp.read_image_header(broken)
    corrupt = wsq[:60] + bytes(len(wsq) - 60)  # the header is right, the image data is not
    fp.read_image_header(corrupt)
    with pytest.raises(fp.FingerImageError, match="corrupt"):
        fp.FingerImage.from_iso19794_4(corrupt)
    with pytest.raises(ValidationError, match="another finger position"):
        FingerprintRecord(position=4, quality=70, data=fingers(0)[3].data, image=wsq)
    with pytest.raises(ValidationError, match="record length"):
        FingerprintRecord(position=3, quality=70, data=fingers(0)[2].data, image=wsq[:-1])


def _evidence(reg: Registry, packet_id) -> dict:  # type: ignore[no-untyped-def]
    with reg.app.state.registry.sessions() as s:
        e = s.scalars(select(Enrolment).where(Enrolment.packet_id == packet_id)).one()
        return json.loads(e.evidence)


@pytest.mark.slow
# on the production database only: extraction does not depend on it, and each run makes
# dozens of templates (a minute or more here); the SQLite path is the demo's, which runs it
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_registry_decides_on_its_own_templates_made_from_the_images(
    registry_factory, db_url, template, photo
):
    """The kiosk's finger templates are ignored when the images are there: a kiosk that sends
    a registered person's finger images with other templates (and another face) is caught."""
    registry = registry_factory(sync_wait_seconds=EXTRACTION_WAIT)
    obama = _packet(registry, "obama__obama.jpg", template, photo, _with_images(1, 0))
    r = registry.submit(obama)
    assert r.json().get("status") == "issued", r.text[:500]
    probe = _evidence(registry, obama.packet_id)["probe"]
    assert probe["face"] == "image" and probe["finger_images"] == list(POSITIONS)
    assert count(db_url, "finger_references") == len(POSITIONS)

    # other impressions of the same fingers, another person's templates, another face
    tampered = _packet(registry, "biden__biden.jpg", template, photo, _with_images(1, 1, 99))
    assert registry.submit(tampered).json()["status"] == "duplicate"
    best = _evidence(registry, tampered.packet_id)["candidates"][0]
    assert [f["position"] for f in best["fingers"]] == list(POSITIONS)
    assert all(f["llr"] > 0 for f in best["fingers"]) and best["face"]["llr"] < 0

    corrupt = _with_images(2, 0)
    image = corrupt[0].image
    assert image is not None
    corrupt[0] = corrupt[0].model_copy(update={"image": image[:60] + bytes(len(image) - 60)})
    bad = _packet(registry, "tom_cruise__img1.jpg", template, photo, corrupt)
    body = registry.submit(bad).json()
    assert body["status"] == "rejected"


def _deduplicator(reg: Registry) -> Deduplicator:
    state = reg.app.state.registry
    return Deduplicator(state.sessions, state.cipher, state.settings)


@pytest.mark.slow
# on the production database only: extraction does not depend on it, and each run makes
# dozens of templates (a minute or more here); the SQLite path is the demo's, which runs it
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_retemplating_is_resumable_and_never_mixes_versions(
    registry_factory, monkeypatch, template, photo
):
    reg = registry_factory(sync_wait_seconds=EXTRACTION_WAIT)
    names = ("obama__obama.jpg", "biden__biden.jpg", "tom_cruise__img1.jpg")
    for seed, name in enumerate(names, start=1):
        packet = _packet(reg, name, template, photo, _with_images(seed, 0))
        assert reg.submit(packet).json()["status"] == "issued"
    state = reg.app.state.registry
    # a new release of both algorithms: the old references are no longer searched
    monkeypatch.setattr(face, "ALGORITHM", "dlib-resnet-v2")
    monkeypatch.setattr(fp, "ALGORITHM", "leader-mcc/2")
    assert _deduplicator(reg).load() == 0

    runs = retemplate(state.sessions, state.cipher, batch=1)
    first = next(runs)
    runs.close()  # killed after its first batch
    assert (first.persons, first.faces, first.fingers) == (1, 1, len(POSITIONS))
    assert _deduplicator(reg).load() == 1  # only the remade person, on the new version alone

    done = [RetemplateProgress(), *retemplate(state.sessions, state.cipher, batch=2)][-1]
    assert (done.persons, done.faces, done.fingers, done.failed) == (2, 2, 2 * len(POSITIONS), 0)
    assert list(retemplate(state.sessions, state.cipher)) == []  # nothing left to do
    with state.sessions() as s:
        algorithms = sorted(set(s.scalars(select(FaceReference.algorithm))))
        assert algorithms == ["dlib-resnet-v1", "dlib-resnet-v2"]  # the old kept for a rollback
        new = s.scalars(select(FingerReference).where(FingerReference.algorithm == "leader-mcc/2"))
        assert len(list(new)) == 3 * len(POSITIONS)
    reg.client.__exit__(None, None, None)

    again = registry_factory(sync_wait_seconds=EXTRACTION_WAIT)
    assert _deduplicator(again).load() == 3  # the new version: every person is searched
    repeat = _packet(again, "biden__biden2.jpg", template, photo, _with_images(2, 1))
    assert again.submit(repeat).json()["status"] == "duplicate"
    ev = _evidence(again, repeat.packet_id)
    assert ev["algorithms"] == {"face": "dlib-resnet-v2", "finger": "leader-mcc/2"}
