"""The words of a skin report: grade names, care advice by grade, referral and the disclaimer,
in Chinese and English. The AI assists; it never diagnoses or prescribes, and every report says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GRADES = ("mild", "moderate", "severe", "very_severe")
GRADE_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("mild", "moderate", "severe", "very severe"),
    "zh": ("轻度", "中度", "重度", "极重度"),
}
KIND_NAMES: dict[str, dict[str, str]] = {
    "en": {
        "comedone": "comedones (whiteheads, blackheads)",
        "papule": "papules",
        "pustule": "pustules",
        "nodule_cyst": "nodules and cysts",
    },
    "zh": {
        "comedone": "粉刺（白头、黑头）",
        "papule": "丘疹",
        "pustule": "脓疱",
        "nodule_cyst": "结节与囊肿",
    },
}
# Hayashi criteria (Japanese Dermatological Association), the ACNE04 grades: lesions on one side
# of the face.
GRADE_RANGES: dict[str, tuple[str, ...]] = {
    "en": ("0–5 lesions", "6–20 lesions", "21–50 lesions", "more than 50 lesions"),
    "zh": ("0–5 个皮损", "6–20 个皮损", "21–50 个皮损", "50 个以上皮损"),
}

_ADVICE: dict[str, tuple[tuple[str, ...], ...]] = {
    "en": (
        (
            "Wash your face twice a day with lukewarm water and a mild, non-soap cleanser; do not scrub.",
            "Use an oil-free, non-comedogenic moisturiser and sunscreen.",
            "Do not squeeze or pick spots: it spreads inflammation and leaves marks.",
            "Over-the-counter benzoyl peroxide or adapalene gel helps mild acne; ask a pharmacist "
            "or doctor before using them if you are pregnant.",
        ),
        (
            "Keep the gentle routine: a mild cleanser twice a day, oil-free moisturiser and sunscreen.",
            "Do not squeeze or pick spots.",
            "Moderate acne usually needs prescription treatment: see a dermatologist, who may "
            "combine topical treatments with a course of oral medicine.",
            "Give any treatment 6 to 8 weeks before judging it, and take follow-up photos in the "
            "same framing so the change can be measured.",
        ),
        (
            "Severe acne can leave permanent scars: see a dermatologist soon rather than trying "
            "more over-the-counter products.",
            "Do not squeeze or pick lesions, and avoid heavy or oily cosmetics.",
            "Keep a mild cleanser, oil-free moisturiser and sunscreen while you wait for treatment.",
        ),
        (
            "Very severe acne needs a dermatologist's treatment promptly to prevent scarring.",
            "Do not squeeze, pick or cover lesions with heavy cosmetics.",
            "If lesions are painful, hot, spreading or you feel unwell with fever, seek medical "
            "care in person today.",
        ),
    ),
    "zh": (
        (
            "每天早晚用温水和温和的洁面产品洗脸，不要用力搓洗。",
            "使用无油、不致粉刺的保湿霜，并注意防晒。",
            "不要挤压或抠痘，以免炎症扩散、留下痘印。",
            "轻度痤疮可在药师或医生指导下外用过氧化苯甲酰或阿达帕林凝胶；孕期使用前请先咨询医生。",
        ),
        (
            "继续温和护肤：早晚温和洁面，使用无油保湿霜并注意防晒。",
            "不要挤压或抠痘。",
            "中度痤疮通常需要处方治疗：请到皮肤科就诊，医生可能会联合外用药和口服药物治疗。",
            "任何治疗都需坚持 6–8 周再评价效果；请按相同构图拍摄复诊照片，便于比较变化。",
        ),
        (
            "重度痤疮可能留下永久性瘢痕：请尽快到皮肤科就诊，不要继续自行尝试非处方产品。",
            "不要挤压或抠皮损，避免使用厚重、油性的化妆品。",
            "等待治疗期间，继续温和洁面、使用无油保湿霜并防晒。",
        ),
        (
            "极重度痤疮需要尽快由皮肤科医生治疗，以防留下瘢痕。",
            "不要挤压、抠或用厚重化妆品遮盖皮损。",
            "如皮损疼痛、发热、迅速扩散，或出现发烧等全身不适，请当天线下就医。",
        ),
    ),
}

DISCLAIMER = {
    "en": "This report is produced by an AI model to assist you and your doctor. It is not a "
    "diagnosis and not a prescription: only a doctor can diagnose skin disease and prescribe treatment.",
    "zh": "本报告由人工智能模型生成，用于辅助您和医生，不是诊断，也不是处方；"
    "皮肤病的诊断和用药只能由医生决定。",
}
_REFERRAL = {
    "en": "We recommend a consultation in the Skin Hospital's acne clinic.",
    "zh": "建议您到皮肤病医院痤疮门诊问诊。",
}
_REFERRAL_NODULE = {
    "en": "Nodules or cysts were found; they scar easily, so a dermatologist should see them.",
    "zh": "发现结节或囊肿，这类皮损容易留疤，请由皮肤科医生诊治。",
}
_NO_REFERRAL = {
    "en": "Mild acne can usually be cared for at home. If it does not improve in 6–8 weeks, or you "
    "are worried, the Skin Hospital's acne clinic can help.",
    "zh": "轻度痤疮通常可以居家护理；如 6–8 周仍无改善，或您有顾虑，可到皮肤病医院痤疮门诊问诊。",
}
NOT_ASSESSABLE = {
    "en": "The AI cannot assess this photo: it does not look like the facial acne photos the model "
    "knows (it may not be a face, or it may be another skin condition). A dermatologist can look at it "
    "in an online consultation.",
    "zh": "AI 无法评估这张照片：它与模型认识的面部痤疮照片不同（可能不是面部，或是其他皮肤问题）。"
    "您可以发起在线问诊，请皮肤科医生查看。",
}


# Hayashi's lesion ranges per grade (inclusive).
_RANGES = ((0, 5), (6, 20), (21, 50), (51, 10**6))
_COUNT_NOTE = {
    "en": "The AI marks fewer lesions than a dermatologist counts when they are close together or "
    "faint; the grade allows for that, so it can be higher than the number marked suggests.",
    "zh": "皮损密集或不明显时，AI 标出的数量会少于皮肤科医生的计数；分级已考虑这一点，"
    "因此可能高于标出数量对应的级别。",
}


def lang_of(locale: str | None) -> str:
    return "en" if (locale or "").lower().startswith("en") else "zh"


def needs_referral(grade: int, by_type: Mapping[str, int]) -> bool:
    """Moderate or worse acne, or any nodule or cyst, goes to the acne clinic."""
    return grade >= 1 or by_type.get("nodule_cyst", 0) > 0


def advice(grade: int, lang: str) -> list[str]:
    return list(_ADVICE[lang_of(lang)][max(0, min(3, grade))])


def wording(grade: int, by_type: Mapping[str, int], lang: str) -> dict[str, Any]:
    """The human part of a report: grade name, what counted, advice, referral, disclaimer, and
    a note when the grade (from calibrated thresholds) is not the one the marked count implies."""
    lang = lang_of(lang)
    low, high = _RANGES[grade]
    marked = sum(int(n) for n in by_type.values())
    referral = needs_referral(grade, by_type)
    reasons = []
    if referral:
        reasons.append(_REFERRAL[lang])
        if by_type.get("nodule_cyst", 0) > 0:
            reasons.append(_REFERRAL_NODULE[lang])
    return {
        "lang": lang,
        "grade_name": GRADE_NAMES[lang][grade],
        "grade_range": GRADE_RANGES[lang][grade],
        "kinds": [
            {"kind": kind, "name": KIND_NAMES[lang][kind], "count": int(n)} for kind, n in by_type.items()
        ],
        "advice": advice(grade, lang),
        "referral": referral,
        "referral_text": " ".join(reasons) if referral else _NO_REFERRAL[lang],
        "disclaimer": DISCLAIMER[lang],
        "count_note": None if low <= marked <= high else _COUNT_NOTE[lang],
    }
