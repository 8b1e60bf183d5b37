"""Triage payloads."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import Input, Output


class TriageIn(Input):
    # Length is checked by the service, so that empty and too long text get their own codes.
    text: str = Field(
        description="the symptoms in the patient's words, Chinese or English (≤ 2000 characters)"
    )
    lang: Literal["zh", "en"] | None = Field(
        default=None, description="the reply's language; detected if absent"
    )


class TriageReason(Output):
    term: str = Field(description="the words of the description that matched")
    matched: str = Field(description="the lexicon term they matched")
    weight: float
    clinic_code: str | None = Field(description="the clinic this term points to; null: the centre as a whole")


class TriageSuggestion(Output):
    centre_id: int | None
    centre_code: str
    centre_name: str
    clinic_id: int | None
    clinic_code: str | None
    clinic_name: str | None
    score: float
    confidence: float = Field(
        description="0-1, how strongly the description points here rather than elsewhere"
    )
    level: Literal["high", "medium", "low"]
    fallback: bool = Field(description="the general option offered because nothing matched well")
    reasons: list[TriageReason]


class TriageEmergency(Output):
    code: str
    label: str
    advice: str
    matched: list[str]


class TriageRead(Output):
    lang: Literal["zh", "en"]
    suggestion_only: Literal[True] = True
    matched: bool = Field(description="false: nothing matched well; `message` says what to do")
    message: str | None
    suggestions: list[TriageSuggestion]
    emergency: TriageEmergency | None = Field(description="a red flag: go to an emergency department instead")
    negated: list[str] = Field(description="terms ignored because the description negates them")
    disclaimer: str
    lexicon_version: str
