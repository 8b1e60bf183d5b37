"""Triage against the deployment's own directory: only centres and clinics that exist are suggested."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.directory.schemas import CentreRead
from ehospital.directory.service import DirectoryService
from ehospital.kit.context import Actor
from ehospital.kit.errors import Unprocessable
from ehospital.triage.engine import CentreEntry, ClinicEntry, TriageInputError, TriageResult, suggest
from ehospital.triage.schemas import (
    TriageEmergency,
    TriageIn,
    TriageRead,
    TriageReason,
    TriageSuggestion,
)


def directory_entries(centres: list[CentreRead]) -> list[CentreEntry]:
    return [
        CentreEntry(
            code=c.code,
            name_en=c.name_en,
            name_zh=c.name_zh,
            id=c.id,
            clinics=tuple(ClinicEntry(k.code, k.name_en, k.name_zh, k.id) for k in c.clinics),
        )
        for c in centres
    ]


def to_read(result: TriageResult) -> TriageRead:
    lang = "zh" if result.lang == "zh" else "en"
    return TriageRead(
        lang=lang,
        matched=result.matched,
        message=result.message,
        suggestions=[
            TriageSuggestion(
                centre_id=s.centre.id,
                centre_code=s.centre.code,
                centre_name=s.centre.name(lang),
                clinic_id=s.clinic.id if s.clinic else None,
                clinic_code=s.clinic.code if s.clinic else None,
                clinic_name=s.clinic.name(lang) if s.clinic else None,
                score=s.score,
                confidence=s.confidence,
                level="high" if s.level == "high" else "medium" if s.level == "medium" else "low",
                fallback=s.fallback,
                reasons=[
                    TriageReason(term=r.term, matched=r.matched, weight=r.weight, clinic_code=r.clinic)
                    for r in s.reasons
                ],
            )
            for s in result.suggestions
        ],
        emergency=(
            TriageEmergency(
                code=result.emergency.code,
                label=result.emergency.label,
                advice=result.emergency.advice,
                matched=list(result.emergency.matched),
            )
            if result.emergency
            else None
        ),
        negated=result.negated,
        disclaimer=result.disclaimer,
        lexicon_version=result.lexicon_version,
    )


class TriageService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def triage(self, actor: Actor, data: TriageIn) -> TriageRead:
        """Suggestions among the active centres and clinics. Nothing is stored: the description
        is health data the patient has not yet chosen to give to anyone."""
        del actor  # any signed-in account may ask; the answer depends on nothing of theirs
        entries = directory_entries(await DirectoryService(self.session).centres())
        try:
            result = suggest(data.text, entries, lang=data.lang)
        except TriageInputError as exc:
            raise Unprocessable(exc.message, code=exc.code) from exc
        return to_read(result)
