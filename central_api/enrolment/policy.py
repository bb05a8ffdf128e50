"""The intake policy: what capture evidence a packet must carry before the registry decides.

A kiosk records how it captured a person (``CaptureInfo``); a tampered or misconfigured kiosk
could send a packet whose evidence says the checks failed, or none at all. Two kinds of rule:

- :func:`evidence_shortfalls`: passive authentication, chip authenticity (Chip / Active
  Authentication, ``intake_chip_authenticity``), liveness, qualities, the 1:1 score,
  every finger accounted for, supervisors' overrides. Each shortfall is a stable reason code;
  the setting ``intake_on_violation`` decides whether such a packet is refused (422
  ``capture_policy``) or stored and held for a person's decision (never issued automatically).
- the data itself, refused whatever the policy, since such a packet is not what an honest
  kiosk makes: finger templates must parse as ISO/IEC 19794-2 records of the position they
  claim (:func:`check_finger_templates`, at intake: 422), and the kiosk's face template must be
  the face of the token image (checked against the registry's own template of it in the dedup
  worker, ``central_api.dedup.extraction``: status ``rejected`` with that reason).
"""

from __future__ import annotations

from biometrics import fingerprint as fp
from central_api.config import Settings
from central_api.enrolment.exceptions import CapturePolicyViolation
from central_api.enrolment.schemas import CaptureInfo, DocumentSource, EnrolmentPacket


def _supervisor(capture: CaptureInfo, action: str) -> bool:
    return any(o.action == action and o.role == "supervisor" for o in capture.overrides)


def supervisor_holds(packet: EnrolmentPacket) -> list[str]:
    """Reason codes of what a supervisor accepted at the kiosk that a person at the registry
    must still look at: such a packet is stored and held for adjudication whatever
    ``intake_on_violation`` says (never refused, never issued automatically)."""
    c = packet.capture
    if c is not None and not c.face_liveness and _supervisor(c, "face_capture_waived"):
        return ["liveness_waived_by_supervisor"]
    return []


def evidence_shortfalls(packet: EnrolmentPacket, s: Settings) -> list[str]:
    """Reason codes of what the capture evidence lacks (empty: it satisfies the policy)."""
    c = packet.capture
    if c is None:
        return ["capture_missing"] if s.intake_require_capture else []
    out: list[str] = []
    if c.document_source == DocumentSource.CHIP:
        pa = c.passive_authentication
        # an unknown CSCA may be accepted by a supervisor (a country not in the trust list);
        # an invalid chip (hashes or signature wrong) never
        if pa != "valid" and not (pa == "unknown_csca" and _supervisor(c, "document_not_verified")):
            out.append(f"passive_authentication_{pa or 'missing'}")
        if c.face_document_similarity is None:
            out.append("face_document_score_missing")
        out += _chip_authenticity(c, s.intake_chip_authenticity)
    elif not _supervisor(c, "no_document"):
        out.append("no_document_without_supervisor")
    if not c.face_liveness and not _supervisor(c, "face_capture_waived"):
        out.append("liveness_not_passed")
    if c.face_quality < s.intake_min_face_quality:
        out.append("face_quality_low")
    score = c.face_document_similarity
    if (
        score is not None
        and score < s.intake_min_face_document_similarity
        and not _supervisor(c, "face_document_mismatch")
    ):
        out.append("face_document_score_low")
    if any(f.quality < s.intake_min_finger_quality for f in packet.fingerprints):
        out.append("finger_quality_low")
    accounted = {f.position for f in packet.fingerprints} | {
        e.position for e in c.finger_exceptions
    }
    if accounted != set(fp.FingerPosition):
        out.append("fingers_unaccounted")
    return out


def _chip_authenticity(c: CaptureInfo, required: str) -> list[str]:
    """Clone detection: a failed Active Authentication always; a missing proof when the
    setting asks for one."""
    if c.active_authentication == "failed":
        return ["active_authentication_failed"]
    chip = c.chip_authentication == "passed"
    active = c.active_authentication == "passed"
    wanted = {"either": chip or active, "chip": chip, "active": active}.get(required, True)
    return [] if wanted else [f"chip_authenticity_missing_{required}"]


def check_finger_templates(packet: EnrolmentPacket) -> None:
    """Refuse (CapturePolicyViolation) finger templates that are not ISO/IEC 19794-2 records
    of the position they claim (cheap: done at intake)."""
    for f in packet.fingerprints:
        try:
            t = fp.FingerprintTemplate.from_iso19794_2(f.data)
        except fp.TemplateFormatError as exc:
            raise CapturePolicyViolation(
                f"finger {f.position}: not an ISO/IEC 19794-2 record ({exc})",
                reasons=["finger_template_invalid"],
            ) from exc
        if t.position not in (0, f.position):
            raise CapturePolicyViolation(
                f"finger {f.position}: the record is of position {t.position}",
                reasons=["finger_template_invalid"],
            )
