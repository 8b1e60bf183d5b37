"""Symptom triage: a transparent, lexicon-based suggestion of a centre and clinic.

A pure library (no database, no web server, nothing downloaded). `suggest()` takes the text a
patient wrote, the centres and clinics that exist in the deployment, and returns ranked
suggestions with the terms that led to each, any red flag that calls for an emergency
department instead, and the terms it ignored because they were negated ("no fever", "不痒").
It is a suggestion for choosing where to ask, never a diagnosis.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ehospital.triage.lexicon import Hit, Lexicon, context_weights, lexicon, normalise, raw_lexicon

MAX_TEXT = 2000
MIN_CENTRE_SCORE = 1.0  # a centre with less evidence is not listed at all
CONFIDENT_SCORE = 2.0  # the best centre needs this much, else "nothing matches well"
TOP = 3

DISCLAIMER = {
    "en": "This is an automatic suggestion to help you choose where to ask, not a diagnosis. "
    "A doctor will assess you; if you feel seriously unwell, call 120 or go to an emergency department.",
    "zh": "这是帮助您选择就诊科室的自动建议，不是诊断。"
    "医生会对您进行评估；如感觉病情严重，请拨打120或前往急诊。",
}
NO_MATCH = {
    "en": "We could not tell from this description which centre fits. Add more detail "
    "(where, since when, what it looks or feels like), or choose a centre yourself.",
    "zh": "根据这段描述，我们无法判断适合哪个中心。请补充细节（部位、持续多久、具体感觉），或自行选择中心。",
}

_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_ZH_AGE = re.compile(r"(\d{1,3})\s*(?:周岁|岁)")
_EN_AGE = re.compile(r"(\d{1,3})[\s-]*(?:years?|yrs?)[\s-]*old|\baged?\s+(\d{1,3})\b")
_EN_MONTHS = re.compile(r"\b\d{1,2}[\s-]*(?:months?|weeks?)[\s-]*old\b|(\d{1,2})\s*个月")


class TriageInputError(ValueError):
    """The text cannot be triaged (empty, too long); `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ClinicEntry:
    code: str
    name_en: str
    name_zh: str
    id: int | None = None

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


@dataclass(frozen=True)
class CentreEntry:
    code: str
    name_en: str
    name_zh: str
    clinics: tuple[ClinicEntry, ...] = ()
    id: int | None = None

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


@dataclass(frozen=True)
class Reason:
    term: str  # as the patient wrote it
    matched: str  # the lexicon term
    weight: float
    clinic: str | None  # the clinic it points to, None for the centre as a whole


@dataclass
class Suggestion:
    centre: CentreEntry
    clinic: ClinicEntry | None
    score: float
    confidence: float
    level: str  # high | medium | low
    reasons: list[Reason]
    fallback: bool = False  # the general/family option offered when nothing matched well


@dataclass(frozen=True)
class Emergency:
    code: str
    label: str
    advice: str
    matched: tuple[str, ...]


@dataclass
class TriageResult:
    lang: str
    suggestions: list[Suggestion]
    emergency: Emergency | None
    matched: bool  # False: nothing matched well (a fallback suggestion may still be offered)
    message: str | None
    negated: list[str] = field(default_factory=list)
    disclaimer: str = ""
    lexicon_version: str = ""

    @property
    def top(self) -> Suggestion | None:
        return self.suggestions[0] if self.suggestions else None


def detect_language(text: str) -> str:
    """'zh' when Chinese characters are at least as many as Latin words, else 'en'."""
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk >= len(_LATIN_WORD.findall(text)) else "en"


def check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TriageInputError("text_not_string", "text must be a string")
    stripped = text.strip()
    if not stripped:
        raise TriageInputError("text_empty", "describe the symptoms first")
    if len(stripped) > MAX_TEXT:
        raise TriageInputError("text_too_long", f"the description is limited to {MAX_TEXT} characters")
    return stripped


def _age_contexts(text: str) -> list[Hit]:
    """'78岁', '8-year-old', 'aged 70', '6个月' as child/elder context hits."""
    found: list[Hit] = []
    for m in _ZH_AGE.finditer(text):
        age = int(m.group(1))
        if age >= 65 or age <= 12:
            key = "ctx:elder" if age >= 65 else "ctx:child"
            found.append(Hit(key, 0, "age", m.group(), m.start(), m.end(), False))
    for m in _EN_AGE.finditer(text):
        age = int(m.group(1) or m.group(2))
        if age >= 65 or age <= 12:
            key = "ctx:elder" if age >= 65 else "ctx:child"
            found.append(Hit(key, 0, "age", m.group(), m.start(), m.end(), False))
    for m in _EN_MONTHS.finditer(text):
        found.append(Hit("ctx:child", 0, "age", m.group(), m.start(), m.end(), False))
    return found


def suggest(
    text: str,
    directory: Sequence[CentreEntry],
    *,
    lang: str | None = None,
    lex: Lexicon | None = None,
) -> TriageResult:
    """Suggestions for `text` among the centres and clinics of `directory` (codes as in the lexicon)."""
    text = check_text(text)
    lang = lang if lang in ("zh", "en") else detect_language(text)
    lex = lex or lexicon()
    norm = normalise(text)
    hits = lex.classify.find(norm) + _age_contexts(norm)
    live = [h for h in hits if not h.negated]
    negated = _unique(h.surface for h in hits if h.negated)
    emergency = _red_flag(lex, norm, lang)

    ctx_weights = context_weights(raw_lexicon())
    contexts: dict[str, Hit] = {}
    for hit in live:
        if hit.key.startswith("ctx:"):
            contexts.setdefault(hit.key[4:], hit)

    by_code = {c.code: c for c in directory}
    scores: dict[str, float] = defaultdict(float)
    clinic_scores: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    reasons: dict[str, list[Reason]] = defaultdict(list)
    seen_groups: set[str] = set()
    for hit in sorted(live, key=lambda h: h.start):
        if hit.key.startswith("ctx:"):
            continue
        group = hit.key
        kind, target = hit.key.split(":")[0], hit.key.split(":")[1]
        centre_code, _, clinic_code = target.partition("/")
        centre = by_code.get(centre_code)
        if centre is None:
            continue
        if clinic_code and clinic_code not in {k.code for k in centre.clinics}:
            clinic_code = ""  # the clinic is not offered here: the evidence still points to the centre
        if group in seen_groups:
            continue
        seen_groups.add(group)
        scores[centre_code] += hit.weight
        if kind == "clinic" and clinic_code:
            clinic_scores[centre_code][clinic_code] += hit.weight
        reasons[centre_code].append(Reason(hit.surface, hit.term, hit.weight, clinic_code or None))

    # Context (a child, an older person) only helps choose among a centre's clinics.
    for code in list(scores):
        centre = by_code[code]
        for clinic in centre.clinics:
            for name, weight in ctx_weights.get((code, clinic.code), {}).items():
                hit_ctx = contexts.get(name)
                if hit_ctx is not None and weight > 0:
                    clinic_scores[code][clinic.code] += weight
                    reasons[code].append(Reason(hit_ctx.surface, f"({name})", weight, clinic.code))

    ranked = sorted(
        (code for code, s in scores.items() if s >= MIN_CENTRE_SCORE),
        key=lambda code: (-scores[code], _order(directory, code)),
    )
    total = sum(scores[c] for c in ranked) or 1.0
    suggestions: list[Suggestion] = []
    for code in ranked[:TOP]:
        centre = by_code[code]
        best = _best_clinic(centre, clinic_scores.get(code, {}))
        score = scores[code]
        confidence = round((score / total) * (1 - math.exp(-score / 3.0)), 2)
        suggestions.append(
            Suggestion(centre, best, round(score, 2), confidence, _level(confidence), reasons[code])
        )

    matched = bool(suggestions) and suggestions[0].score >= CONFIDENT_SCORE
    message = None
    if not matched:
        message = NO_MATCH[lang]
        fallback = next((by_code[c] for c in lex.fallback_centres if c in by_code), None)
        if fallback is not None and fallback.code not in ranked[:1]:
            suggestions.insert(0, Suggestion(fallback, None, 0.0, 0.1, "low", [], fallback=True))
            suggestions = suggestions[:TOP]
    return TriageResult(
        lang=lang,
        suggestions=suggestions,
        emergency=emergency,
        matched=matched,
        message=message,
        negated=negated,
        disclaimer=DISCLAIMER[lang],
        lexicon_version=lex.version,
    )


def _order(directory: Sequence[CentreEntry], code: str) -> int:
    return next(i for i, c in enumerate(directory) if c.code == code)


def _best_clinic(centre: CentreEntry, scores: dict[str, float]) -> ClinicEntry | None:
    best: ClinicEntry | None = None
    best_score = 0.0
    for clinic in centre.clinics:  # ties go to the clinic listed first
        if scores.get(clinic.code, 0.0) > best_score:
            best, best_score = clinic, scores[clinic.code]
    return best


def _level(confidence: float) -> str:
    if confidence >= 0.6:
        return "high"
    if confidence >= 0.35:
        return "medium"
    return "low"


def _red_flag(lex: Lexicon, norm: str, lang: str) -> Emergency | None:
    hits = [h for h in lex.flags.find(norm) if not h.negated]
    by_key: dict[str, list[Hit]] = defaultdict(list)
    for hit in hits:
        by_key[hit.key].append(hit)
    # The most specific flag wins (the alternative with most groups: anaphylaxis, which includes
    # breathing trouble, rather than breathing trouble alone); ties go to the lexicon's order.
    best: tuple[int, Emergency] | None = None
    for flag in lex.red_flags:
        for keys in flag.alternatives:
            if all(by_key.get(k) for k in keys) and (best is None or len(keys) > best[0]):
                matched = _unique(by_key[k][0].surface for k in keys)
                best = (len(keys), Emergency(flag.code, flag.label[lang], flag.advice[lang], tuple(matched)))
    return best[1] if best else None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def demo_directory() -> list[CentreEntry]:
    """The demo hospital's centres and clinics (`ehospital demo`), for evaluation without a database."""
    from ehospital.demo import CENTRES

    return [
        CentreEntry(code, en, zh, tuple(ClinicEntry(c, c_en, c_zh) for c, c_en, c_zh in clinics))
        for code, en, zh, _den, _dzh, clinics in CENTRES
    ]
