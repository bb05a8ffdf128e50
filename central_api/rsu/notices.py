"""Notices to households: what the registry tells a household that did not ask at the time.

A notice is queued (:class:`~central_api.rsu.models.Notice`) when a programme's eligibility
changes without the citizen in front of a kiosk (new partner data, a re-score under a new
model or threshold version) and when an appeal is answered. It names what happened by
reference to the decision or the appeal; its words are written at delivery, in the language
asked for (:func:`text`). A notice is delivered once: at the household's next visit to a
kiosk (shown on the status page), or by a :class:`Notifier` (``central-api rsu-notify``): the
adapter interface of an SMS or mail gateway. :class:`JsonLinesNotifier` writes each notice as
a JSON line to a file (the demo's stand-in, and what a gateway's batch import takes).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Final, Literal, Protocol

from central_api.rsu.scoring import Language, Programme

NoticeKind = Literal["eligibility_changed", "appeal_answered"]

_PROGRAMMES: Final[dict[Programme, dict[Language, str]]] = {
    Programme.AMO_TADAMON: {
        Language.FR: "AMO Tadamon",
        Language.EN: "AMO Tadamon",
        Language.AR: "أمو تضامن",
        Language.ZGH: "AMO ⵜⴰⴹⴰⵎⵓⵏ",
    },
    Programme.ASD: {
        Language.FR: "l'aide sociale directe",
        Language.EN: "direct social aid",
        Language.AR: "الدعم الاجتماعي المباشر",
        Language.ZGH: "ⵜⴰⵡⵉⵙⵉ ⵜⴰⵏⴰⵎⵓⵏⵜ ⵜⵓⵙⵔⵉⴷⵜ",
    },
}
_TEXTS: Final[dict[Language, dict[str, str]]] = {
    Language.FR: {
        "gained": "Le {day}, votre ménage est devenu éligible à {programme} ({why}).",
        "lost": "Le {day}, votre ménage n'est plus éligible à {programme} ({why}). "
        "Vous pouvez contester dans les 15 jours auprès d'un agent.",
        "partner_data": "nouvelles données des administrations partenaires",
        "rescore": "révision du modèle ou des seuils",
        "declaration": "nouvelle déclaration",
        "upheld": "Le {day}, votre recours a été examiné : la décision est maintenue.",
        "corrected": "Le {day}, votre recours a été examiné : la décision a été corrigée.",
    },
    Language.EN: {
        "gained": "On {day}, your household became eligible for {programme} ({why}).",
        "lost": "On {day}, your household stopped being eligible for {programme} ({why}). "
        "You may appeal within 15 days with an agent.",
        "partner_data": "new data from partner administrations",
        "rescore": "a revised model or thresholds",
        "declaration": "a new declaration",
        "upheld": "On {day}, your appeal was answered: the decision stands.",
        "corrected": "On {day}, your appeal was answered: the decision was corrected.",
    },
    Language.AR: {
        "gained": "بتاريخ {day}، أصبحت أسرتك مؤهلة لـ{programme} ({why}).",
        "lost": "بتاريخ {day}، لم تعد أسرتك مؤهلة لـ{programme} ({why}). "
        "يمكنك الطعن خلال 15 يوما لدى أحد الأعوان.",
        "partner_data": "معطيات جديدة من الإدارات الشريكة",
        "rescore": "مراجعة النموذج أو العتبات",
        "declaration": "تصريح جديد",
        "upheld": "بتاريخ {day}، تم البت في طعنك: القرار قائم.",
        "corrected": "بتاريخ {day}، تم البت في طعنك: تم تصحيح القرار.",
    },
    Language.ZGH: {
        "gained": "ⴳ {day}, ⵜⵓⵙⵉ ⵜⵡⵊⴰ ⵏⵏⴽ ⴰⵣⵔⴼ ⵏ {programme} ({why}).",
        "lost": "ⴳ {day}, ⵓⵔ ⵜⵙⵄⵉ ⵜⵡⵊⴰ ⵏⵏⴽ ⴰⵣⵔⴼ ⵏ {programme} ({why}). "
        "ⵜⵣⵎⵔⴹ ⴰⴷ ⵜⵄⴰⵡⴷⴷ ⴳ 15 ⵏ ⵡⵓⵙⵙⴰⵏ ⵖⵔ ⵢⴰⵏ ⵓⵎⴰⵡⴰⵙ.",
        "partner_data": "ⵉⵙⴼⴽⴰ ⵉⵎⴰⵢⵏⵓⵜⵏ ⵏ ⵜⵏⴱⴰⴹⵉⵏ ⵜⵉⵎⴷⴷⵓⴽⴰⵍ",
        "rescore": "ⴰⵙⵏⴼⵍ ⵏ ⵓⵎⴷⵢⴰ ⵏⵖ ⵉⵙⵉⵍⵏ",
        "declaration": "ⴰⵙⵙⵏⵜⵉ ⴰⵎⴰⵢⵏⵓ",
        "upheld": "ⴳ {day}, ⵉⵜⵜⵓⵙⵡⵓⵔⵉ ⵓⵄⴰⵡⴷ ⵏⵏⴽ: ⵜⵇⵇⵉⵎ ⵜⵖⵜⴰⵙⵜ.",
        "corrected": "ⴳ {day}, ⵉⵜⵜⵓⵙⵡⵓⵔⵉ ⵓⵄⴰⵡⴷ ⵏⵏⴽ: ⵜⵜⵓⵙⵖⵓⴷⴰ ⵜⵖⵜⴰⵙⵜ.",
    },
}


@dataclass(frozen=True)
class Message:
    """A notice as delivered: to which household, what happened, in words."""

    notice_id: int
    reference: str
    kind: NoticeKind
    day: date
    programme: Programme | None
    eligible: bool | None  # eligibility_changed: the eligibility now
    outcome: str | None  # appeal_answered: upheld | corrected
    language: Language
    text: str


def text(
    kind: NoticeKind,
    day: date,
    language: Language | str,
    *,
    programme: Programme | None = None,
    eligible: bool | None = None,
    reason: str | None = None,
    outcome: str | None = None,
) -> str:
    """A notice's words in ``language`` (dates as DD/MM/YYYY)."""
    lang = Language(language)
    words = _TEXTS[lang]
    when = day.strftime("%d/%m/%Y")
    if kind == "appeal_answered":
        return words["corrected" if outcome == "corrected" else "upheld"].format(day=when)
    assert programme is not None
    return words["gained" if eligible else "lost"].format(
        day=when,
        programme=_PROGRAMMES[programme][lang],
        why=words.get(reason or "", words["rescore"]),
    )


class Notifier(Protocol):
    """Where notices go: an SMS or mail gateway's adapter. ``send`` returns only once the
    gateway has the message (it raises otherwise: the notice stays pending)."""

    channel: str

    def send(self, message: Message) -> None:
        """Hand one message to the gateway."""


class JsonLinesNotifier:
    """Each message a JSON line appended to ``path`` (flushed and synced before ``send``
    returns): the demo's gateway, and a batch file a real gateway can import."""

    channel = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: Message) -> None:
        """Append ``message``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(message), ensure_ascii=False, default=str)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
