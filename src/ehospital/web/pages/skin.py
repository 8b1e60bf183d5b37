"""The online skin hospital's pages: a family member's facial photos with the AI acne report, the
trend of their lesion count and the follow-up schedule for the patient; the photo beside its report
with the review form (confirmed grade, lesion corrections, diagnosis) for the dermatologist.

They call SkinService exactly as the JSON API does (ehospital.skin.router); photos are served by
cookie-authenticated routes here, never cached, to whoever the service lets see them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from markupsafe import Markup, escape
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import FormData

from ehospital.consultations.models import OPEN_STATUSES, Status
from ehospital.consultations.service import ConsultationService
from ehospital.directory.service import DirectoryService
from ehospital.kit.errors import DomainError
from ehospital.kit.images import read_limited
from ehospital.patients.models import Patient, Relationship
from ehospital.patients.service import PatientService
from ehospital.skin.model import LESION_TYPES
from ehospital.skin.overlay import KIND_COLOURS
from ehospital.skin.report import GRADE_NAMES, GRADE_RANGES, lang_of
from ehospital.skin.router import MAX_PHOTO_BYTES, report_read
from ehospital.skin.schemas import FollowUpIn, ReviewIn, SkinReportRead
from ehospital.skin.service import PhotoRecord, PhotoRefused, SkinService, photo_store
from ehospital.skin.tables import VIEWS
from ehospital.web.common import CHINA_TIME, CareWeb, DoctorWeb, PatientWeb, PostedForm, Web
from ehospital.web.forms import (
    EMPTY,
    FormState,
    domain_message,
    failed,
    field_error,
    invalid,
    uploads,
    values_of,
)
from ehospital.web.i18n import Translator
from ehospital.web.pages.shared import MAX_ID, id_text

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
ACCEPT = "image/jpeg,image/png,image/webp"
THUMB_PX = 320
PANEL_PHOTOS = 12
DEFAULT_INTERVAL_DAYS = 28
# Hayashi's lesion counts that separate the grades (mild ≤ 5 < moderate ≤ 20 < severe ≤ 50 < very severe).
GRADE_LIMITS = (5, 20, 50)
# A lesion the dermatologist adds by a click, as a fraction of the photo's width.
NEW_LESION_RADIUS = 0.018
MAX_LESIONS_JSON = 100_000


def _service(web: Web) -> SkinService:
    return SkinService(web.session, photo_store(web.runtime.settings))


def _local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(CHINA_TIME).strftime(fmt)


def grade_options(lang: str) -> list[tuple[str, str]]:
    """(value, "name · range") of the four grades, for selects and legends."""
    lang = lang_of(lang)
    return [(str(i), f"{GRADE_NAMES[lang][i]} · {GRADE_RANGES[lang][i]}") for i in range(4)]


def grade_name(grade: int | None, lang: str) -> str:
    if grade is None or not 0 <= grade <= 3:
        return "—"
    return GRADE_NAMES[lang_of(lang)][grade]


def kind_legend(t: Translator) -> list[dict[str, str]]:
    return [
        {"kind": k, "name": t(f"skin.kind.{k}"), "colour": KIND_COLOURS.get(k, "#888888")}
        for k in LESION_TYPES
    ]


async def _doctor_names(web: Web, records: Sequence[PhotoRecord]) -> dict[int, str]:
    directory = DirectoryService(web.session)
    names: dict[int, str] = {}
    for found in records:
        for review in found.reviews[:1]:
            if review.doctor_id not in names:
                try:
                    names[review.doctor_id] = (
                        await directory.doctor(review.doctor_id, include_unverified=True)
                    ).name
                except DomainError:
                    names[review.doctor_id] = ""
    return names


# --- one photo as the pages show it -----------------------------------------------------------------


@dataclass(frozen=True)
class PhotoView:
    """A photo's row in the history table, a point of the trend and a thumbnail."""

    id: int
    patient_id: int
    consultation_id: int | None
    view: str
    taken_at: datetime
    taken: str
    date: str
    grade: int | None
    grade_name: str
    lesions: int | None
    referral: bool
    reviewed_by: str | None
    confirmed_grade: int | None
    confirmed_name: str
    corrected_lesions: int | None
    consent: bool
    has_overlay: bool

    @property
    def count(self) -> int | None:
        """The lesion count the trend plots: the dermatologist's if they corrected it."""
        return self.corrected_lesions if self.corrected_lesions is not None else self.lesions

    @property
    def shown_grade(self) -> int | None:
        return self.confirmed_grade if self.confirmed_grade is not None else self.grade


def photo_view(found: PhotoRecord, lang: str, names: Mapping[int, str]) -> PhotoView:
    photo, analysis = found.photo, found.analysis
    review = found.reviews[0] if found.reviews else None
    corrected = None
    if review is not None and review.lesions is not None:
        try:
            corrected = len(json.loads(review.lesions))
        except (ValueError, TypeError):
            corrected = None
    grade = analysis.grade if analysis is not None else None
    return PhotoView(
        id=photo.id,
        patient_id=photo.patient_id,
        consultation_id=photo.consultation_id,
        view=photo.view,
        taken_at=photo.created_at,
        taken=_local(photo.created_at),
        date=_local(photo.created_at, "%Y-%m-%d"),
        grade=grade,
        grade_name=grade_name(grade, lang),
        lesions=analysis.lesion_count if analysis is not None else None,
        referral=bool(analysis is not None and analysis.referral),
        reviewed_by=(names.get(review.doctor_id) or "✓") if review is not None else None,
        confirmed_grade=review.confirmed_grade if review is not None else None,
        confirmed_name=grade_name(review.confirmed_grade, lang) if review is not None else "",
        corrected_lesions=corrected,
        consent=photo.training_consent_at is not None,
        has_overlay=photo.overlay_key is not None,
    )


# --- the trend chart: lesion count over time, the grade bands behind ---------------------------------

_W, _H = 560.0, 220.0
_LEFT, _RIGHT, _TOP, _BOTTOM = 30.0, 12.0, 10.0, 24.0
_PAD = 14.0  # keeps the first and the last point off the chart's edges
_DATE_GAP = 130.0  # date labels closer than this (in chart units) are left out


def trend_chart(points: Sequence[PhotoView], t: Translator, link: str, *, chart_id: str = "trend") -> Markup:
    """An inline SVG (no script, no style attribute): one line per view, each point a link to the
    photo's report (`link` is formatted with id=…), the four grade bands shaded behind. The count
    axis is a square-root scale, so the narrow mild band (0–5) is as readable as the others."""
    plotted = [p for p in points if p.count is not None]
    if not plotted:
        return Markup("")
    lang = t.lang
    top = max(60.0, math.ceil(max(float(p.count or 0) for p in plotted) * 1.1 / 10.0) * 10.0)
    x0, x1 = _LEFT, _W - _RIGHT
    y0, y1 = _H - _BOTTOM, _TOP
    times = [p.taken_at.timestamp() for p in plotted]
    first, last = min(times), max(times)

    def x_of(stamp: float) -> float:
        if last - first < 1.0:
            return (x0 + x1) / 2
        return x0 + _PAD + (stamp - first) / (last - first) * (x1 - x0 - 2 * _PAD)

    def y_of(count: float) -> float:
        return y0 - math.sqrt(max(0.0, min(count, top)) / top) * (y0 - y1)

    out: list[str] = [
        f'<svg class="skin-chart" id="{chart_id}" viewBox="0 0 {_W:.0f} {_H:.0f}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(t("skin.trend.title"))}</title>',
        f'<desc id="{chart_id}-desc">{escape(t("skin.trend.desc", n=len(plotted)))}</desc>',
    ]
    bounds = (0.0, *map(float, GRADE_LIMITS), top)
    names = GRADE_NAMES[lang_of(lang)]
    ranges = GRADE_RANGES[lang_of(lang)]
    for grade in range(4):
        low, high = bounds[grade], min(bounds[grade + 1], top)
        if low >= top:
            break
        ya, yb = y_of(high), y_of(low)
        out.append(
            f'<rect class="skin-band b{grade}" x="{x0:.1f}" y="{ya:.1f}" width="{x1 - x0:.1f}" '
            f'height="{yb - ya:.1f}"><title>{escape(names[grade])} · {escape(ranges[grade])}</title></rect>'
        )
    # The top of the axis is labelled only where it is far enough from 50 not to collide.
    for tick in sorted({0, *GRADE_LIMITS, *([int(top)] if top >= 100 else [])}):
        y = y_of(float(tick))
        out.append(f'<line class="skin-grid" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="skin-tick" x="{x0 - 5:.1f}" y="{y:.1f}" dy="0.35em" text-anchor="end">'
            f"{tick}</text>"
        )
    out.append(f'<line class="skin-axis-line" x1="{x0:.1f}" x2="{x1:.1f}" y1="{y0:.1f}" y2="{y0:.1f}"/>')
    out.extend(_date_labels(plotted, x_of, x0, x1, y0 + 17))
    for view in VIEWS:
        series = [p for p in plotted if p.view == view]
        if not series:
            continue
        coords = [(x_of(p.taken_at.timestamp()), y_of(float(p.count or 0))) for p in series]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            out.append(f'<polyline class="skin-line v-{view}" points="{path}"/>')
        for p, (x, y) in zip(series, coords, strict=True):
            label = t(
                "skin.trend.point",
                date=p.taken,
                view=t(f"skin.view.{p.view}"),
                n=p.count,
                grade=grade_name(p.shown_grade, lang),
            )
            reviewed = " reviewed" if p.confirmed_grade is not None or p.corrected_lesions is not None else ""
            out.append(
                f'<a href="{escape(link.format(id=p.id))}" aria-label="{escape(label)}">'
                f'<circle class="skin-point v-{view}{reviewed}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
                f'data-photo="{p.id}"><title>{escape(label)}</title></circle></a>'
            )
    out.append("</svg>")
    return Markup("".join(out))


def _date_labels(
    plotted: Sequence[PhotoView], x_of: Callable[[float], float], x0: float, x1: float, y: float
) -> list[str]:
    """The dates under the chart: the first and the last always, others where there is room; the
    ends are anchored inwards so they never spill over the chart's edges."""
    dates: dict[str, float] = {}
    for p in plotted:
        dates.setdefault(p.date, x_of(p.taken_at.timestamp()))
    items = list(dates.items())
    # The first and the last photos sit at the chart's two ends: their dates always fit.
    chosen = items[:1]
    for label, x in items[1:-1]:
        if x - chosen[-1][1] >= _DATE_GAP and items[-1][1] - x >= _DATE_GAP:
            chosen.append((label, x))
    if len(items) > 1:
        chosen.append(items[-1])
    out = []
    for label, x in chosen:
        if len(items) == 1:
            anchor = "middle"
        elif x - x0 < _DATE_GAP / 2:
            anchor, x = "start", x0
        elif x1 - x < _DATE_GAP / 2:
            anchor, x = "end", x1
        else:
            anchor = "middle"
        out.append(
            f'<text class="skin-tick" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    return out


def chart_views(points: Sequence[PhotoView]) -> list[str]:
    """The views the chart draws, for its legend."""
    seen = {p.view for p in points if p.count is not None}
    return [v for v in VIEWS if v in seen]


# --- the patient's page: upload, guide, history, follow-up --------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why the photo was refused and how to take it again, in the page's language."""

    code: str
    message: str
    retake: str


async def _family(web: Web) -> list[Patient]:
    members = await PatientService(web.session).family(web.me)
    return sorted(members, key=lambda p: (p.relationship != Relationship.SELF, p.id))


async def _open_consultations(web: Web, patient_id: int) -> list[dict[str, Any]]:
    """The patient's open consultations a photo's report can be attached to."""
    service = ConsultationService(web.session, web.runtime.settings, web.runtime.files)
    found = await service.list_for(web.me, limit=100)
    centres = await DirectoryService(web.session).centres(include_inactive=True)
    centre_names = {c.id: c.name_zh if web.lang == "zh" else c.name_en for c in centres}
    clinic_names = {k.id: k.name_zh if web.lang == "zh" else k.name_en for c in centres for k in c.clinics}
    return [
        {
            "id": c.id,
            "label": web.t(
                "skin.upload.consultation_option",
                id=c.id,
                where=" · ".join(
                    x
                    for x in (centre_names.get(c.centre_id, ""), clinic_names.get(c.clinic_id or 0, ""))
                    if x
                ),
                status=web.t.label("status", c.status),
            ),
        }
        for c in found
        if c.patient.id == patient_id and Status(c.status) in OPEN_STATUSES
    ]


async def acne_clinic(web: Web) -> tuple[int, int] | None:
    """(centre id, clinic id) of the skin hospital's acne clinic, for the referral link."""
    best: tuple[int, int] | None = None
    for centre in await DirectoryService(web.session).centres():
        for clinic in centre.clinics:
            if clinic.code == "acne" and clinic.is_active:
                if centre.code == "skin":
                    return centre.id, clinic.id
                best = best or (centre.id, clinic.id)
    return best


async def _patient_page(
    web: Web,
    patient_id: int | None,
    *,
    state: FormState = EMPTY,
    refusal: Refusal | None = None,
    view: str | None = None,
    status_code: int = 200,
) -> Response:
    members = await _family(web)
    if patient_id is None:
        if not members:
            return web.render(
                "skin_patient.html", members=[], patient=None, here="/skin", nav_current="/skin"
            )
        patient_id = members[0].id
        here = "/skin"
    else:
        here = f"/skin/{patient_id}"
    service = _service(web)
    records = await service.history(web.me, patient_id)  # 404 for anyone else's
    patient = next(p for p in members if p.id == patient_id)
    names = await _doctor_names(web, records)
    photos = [photo_view(r, web.lang, names) for r in records]
    last_by_view: dict[str, PhotoView] = {}
    for p in photos:
        last_by_view[p.view] = p
    chosen = state.value("view") or view or "front"
    if chosen not in VIEWS:
        chosen = "front"
    plan = await service.followup(web.me, patient_id)
    followup = None
    if plan is not None:
        followup = {
            "interval_days": plan.interval_days,
            "views": plan.views.split(","),
            "next_due": _local(plan.next_due_at, "%Y-%m-%d"),
            "overdue": plan.active
            and plan.next_due_at.replace(tzinfo=plan.next_due_at.tzinfo or UTC) <= datetime.now(UTC),
            "active": plan.active,
        }
    f_state = state.of("followup")
    if f_state.form:
        followup_values = f_state
    else:
        followup_values = FormState(
            "followup",
            {
                "interval_days": str(plan.interval_days if plan else DEFAULT_INTERVAL_DAYS),
                "views": plan.views if plan else "front",
                "active": "1" if (plan is None or plan.active) else "",
            },
        )
    return web.render(
        "skin_patient.html",
        members=members,
        patient=patient,
        photos=list(reversed(photos)),
        chart=trend_chart(photos, web.t, "/skin/photos/{id}"),
        chart_views=chart_views(photos),
        last_by_view=last_by_view,
        views=VIEWS,
        chosen_view=chosen,
        consultations=await _open_consultations(web, patient_id),
        followup=followup,
        followup_form=followup_values,
        state=state,
        refusal=refusal,
        accept=ACCEPT,
        max_mib=MAX_PHOTO_BYTES // (1024 * 1024),
        grade_bands=grade_options(web.lang),
        status_code=status_code,
        here=here,
        nav_current="/skin",
    )


@router.get("/skin")
async def my_skin(web: PatientWeb) -> Response:
    """The account holder's skin page (the others of the family are a tab away)."""
    return await _patient_page(web, None)


@router.get("/skin/{patient_id}")
async def member_skin(
    patient_id: Id, web: PatientWeb, view: Annotated[str | None, Query(max_length=8)] = None
) -> Response:
    """Upload a photo, read the guide, follow the trend and the follow-up schedule."""
    return await _patient_page(web, patient_id, view=view)


UPLOAD_FIELDS = ("view", "consultation_id", "consent")


def _form_id(form: FormData, key: str) -> int | None:
    """An optional id field: None when empty or not a valid id."""
    raw = id_text(form, key)
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        return None
    return int(raw)


@router.post("/skin/{patient_id}/photos")
async def upload_photo(patient_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    """Analyse a photo and keep it with its report; a refused photo shows why and how to retake."""
    values = values_of(form, *UPLOAD_FIELDS)
    view = values["view"] or "front"
    if view not in VIEWS:
        state = field_error(web.t, "upload", "view", "validation.choice", values)
        return await _patient_page(web, patient_id, state=state, status_code=422)
    files = uploads(form, "photo")
    if len(files) != 1:
        key = "skin.upload.choose_photo" if not files else "skin.upload.one_photo"
        state = field_error(web.t, "upload", "photo", key, values)
        return await _patient_page(web, patient_id, state=state, status_code=422)
    consultation_id = _form_id(form, "consultation_id")
    if values["consultation_id"] and consultation_id is None:
        state = field_error(web.t, "upload", "consultation_id", "validation.choice", values)
        return await _patient_page(web, patient_id, state=state, status_code=422)
    # The service words its refusals in the actor's language: that of this page.
    actor = replace(web.me, locale=web.lang)
    try:
        data = await read_limited(files[0], MAX_PHOTO_BYTES)
        async with web.atomic():
            found = await _service(web).submit(
                actor,
                patient_id,
                data,
                view=view,
                consultation_id=consultation_id,
                training_consent=values["consent"] == "1",
            )
    except DomainError as exc:
        if exc.status_code == 404 and exc.code == "patient_not_found":
            raise
        refusal = _refusal(web.t, exc)
        state = FormState(
            form="upload",
            values=values,
            error=refusal.message if refusal else domain_message(web.t, exc.code, exc.message),
            code=exc.code,
        )
        return await _patient_page(
            web, patient_id, state=state, refusal=refusal, view=view, status_code=exc.status_code
        )
    return web.redirect(f"/skin/photos/{found.photo.id}?notice=skin_photo_analysed")


def _refusal(t: Translator, exc: DomainError) -> Refusal | None:
    """A refused photo's reason and retake tip; None for refusals that are not about the photo."""
    if exc.code == "file_too_large":  # refused while reading, before the service saw it
        return Refusal(
            exc.code,
            t("skin.refused.file_too_large", max=MAX_PHOTO_BYTES // (1024 * 1024)),
            t("skin.retake.file_too_large"),
        )
    if not isinstance(exc, PhotoRefused):
        return None
    retake = exc.details.get("retake")
    return Refusal(exc.code, exc.message, str(retake) if retake else t("skin.retake.generic"))


@router.post("/skin/{patient_id}/followup")
async def save_followup(patient_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    """Every how many days to take comparable photos again, and of which views."""
    values = values_of(form, "interval_days", "active")
    chosen = [v for v in form.getlist("views") if isinstance(v, str)]
    values = {**values, "views": ",".join(chosen)}
    try:
        data = FollowUpIn.model_validate(
            {"interval_days": values["interval_days"], "views": chosen, "active": values["active"] == "1"}
        )
    except ValidationError as exc:
        state = invalid(web.t, "followup", exc, values)
        if "interval_days" in state.fields:
            state.fields["interval_days"] = web.t("skin.followup.interval_invalid")
        if "views" in state.fields:
            state.fields["views"] = web.t("skin.followup.views_invalid")
        return await _patient_page(web, patient_id, state=state, status_code=422)
    try:
        async with web.atomic():
            await _service(web).set_followup(
                web.me, patient_id, interval_days=data.interval_days, views=data.views, active=data.active
            )
    except DomainError as exc:
        return await _patient_page(
            web, patient_id, state=failed(web.t, "followup", exc, values), status_code=exc.status_code
        )
    return web.redirect(f"/skin/{patient_id}?notice=skin_followup_saved#followup")


# --- the patient's report of one photo -----------------------------------------------------------------


def _report_facts(report: SkinReportRead, t: Translator) -> dict[str, Any]:
    """What the report and the doctor's page show of the AI's reading."""
    words = report.words
    acne = report.acne
    kinds = []
    colours = KIND_COLOURS
    counts = acne.by_type if acne is not None else {}
    for kind in LESION_TYPES:
        kinds.append(
            {
                "kind": kind,
                "name": t(f"skin.kind.{kind}"),
                "count": int(counts.get(kind, 0)),
                "colour": colours.get(kind, "#888888"),
            }
        )
    probabilities = []
    if acne is not None:
        for grade, p in enumerate(acne.grade_probabilities[:4]):
            probabilities.append(
                {
                    "grade": grade,
                    "name": grade_name(grade, t.lang),
                    "percent": f"{100.0 * p:.0f}%",
                    "width": f"{max(0.0, min(1.0, p)) * 100:.1f}",
                    "top": grade == acne.grade,
                }
            )
    return {
        "grade": acne.grade if acne is not None else None,
        "grade_name": str(words.get("grade_name", "—")),
        "grade_range": str(words.get("grade_range", "")),
        "count_note": str(words.get("count_note") or ""),
        "lesions": acne.lesions if acne is not None else None,
        "kinds": kinds,
        "advice": [str(a) for a in words.get("advice", [])],
        "referral": bool(words.get("referral", report.referral)),
        "referral_text": str(words.get("referral_text", "")),
        "disclaimer": str(words.get("disclaimer", "")) or t("skin.report.disclaimer"),
        "probabilities": probabilities,
        "model": report.model or "",
    }


def _review_view(report: SkinReportRead, t: Translator) -> dict[str, Any] | None:
    review = report.review
    if review is None:
        return None
    return {
        "doctor": review.doctor_name or "",
        "time": _local(review.created_at),
        "confirmed_grade": review.confirmed_grade,
        "confirmed_name": grade_name(review.confirmed_grade, t.lang),
        "lesions": len(review.lesions) if review.lesions is not None else None,
        "diagnosis_code": review.diagnosis_code or "",
        "diagnosis_text": review.diagnosis_text,
        "notes": review.notes,
        "count": report.reviews,
    }


async def _report(web: Web, photo_id: int) -> tuple[PhotoRecord, SkinReportRead]:
    found = await _service(web).get(web.me, photo_id)  # 404 unless the caller may see the patient
    names = await _doctor_names(web, [found])
    doctor = names.get(found.reviews[0].doctor_id) if found.reviews else None
    return found, report_read(found, web.lang, doctor)


async def _report_page(web: Web, photo_id: int, state: FormState = EMPTY, status_code: int = 200) -> Response:
    found, report = await _report(web, photo_id)
    patient = await PatientService(web.session).get(web.me, found.photo.patient_id)
    clinic = await acne_clinic(web)
    referral_url = f"/patient/consultations/new?patient={patient.id}"
    if clinic is not None:
        referral_url += f"&centre={clinic[0]}&clinic={clinic[1]}"
    return web.render(
        "skin_report.html",
        patient=patient,
        report=report,
        photo=photo_view(found, web.lang, {}),
        facts=_report_facts(report, web.t),
        review=_review_view(report, web.t),
        legend=kind_legend(web.t),
        referral_url=referral_url,
        state=state,
        status_code=status_code,
        nav_current="/skin",
    )


@router.get("/skin/photos/{photo_id}")
async def photo_report(photo_id: Id, web: PatientWeb) -> Response:
    """The photo beside the AI's markings, the grade, the advice and the doctor's review."""
    return await _report_page(web, photo_id)


@router.post("/skin/photos/{photo_id}/consent")
async def set_consent(photo_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    """Give or withdraw consent to use this photo to improve the model."""
    values = values_of(form, "training")
    try:
        async with web.atomic():
            await _service(web).set_consent(web.me, photo_id, values["training"] == "1")
    except DomainError as exc:
        return await _report_page(web, photo_id, failed(web.t, "consent", exc, values), exc.status_code)
    notice = "skin_consent_given" if values["training"] == "1" else "skin_consent_withdrawn"
    return web.redirect(f"/skin/photos/{photo_id}?notice={notice}#consent")


@router.post("/skin/photos/{photo_id}/delete")
async def delete_photo(photo_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    """Remove the photo and its markings for good; the history keeps no copy."""
    service = _service(web)
    found = await service.get(web.me, photo_id)
    try:
        async with web.atomic():
            await service.delete(web.me, photo_id)
    except DomainError as exc:
        return await _report_page(web, photo_id, failed(web.t, "delete", exc, {}), exc.status_code)
    return web.redirect(f"/skin/{found.photo.patient_id}?notice=skin_photo_deleted")


# --- the photos themselves -------------------------------------------------------------------------------


def _jpeg(web: Web, content: bytes) -> Response:
    return web.finish(
        Response(
            content,
            media_type="image/jpeg",
            headers={
                "Cache-Control": "private, no-store",
                "Content-Security-Policy": "default-src 'none'; sandbox",
                "Content-Disposition": "inline",
            },
        )
    )


def _thumbnail(data: bytes, size: int = THUMB_PX) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=82)
        return out.getvalue()


@router.get("/skin/photos/{photo_id}/image")
async def photo_image(photo_id: Id, web: CareWeb) -> Response:
    """The photo as stored (JPEG, no metadata), to the patient's account and their doctors."""
    return _jpeg(web, await _service(web).image(web.me, photo_id))


@router.get("/skin/photos/{photo_id}/overlay")
async def photo_overlay(photo_id: Id, web: CareWeb) -> Response:
    """The photo with every lesion the AI found marked in its type's colour."""
    return _jpeg(web, await _service(web).image(web.me, photo_id, overlay=True))


@router.get("/skin/photos/{photo_id}/thumb")
async def photo_thumb(photo_id: Id, web: CareWeb) -> Response:
    """A small copy for lists and the framing guide."""
    data = await _service(web).image(web.me, photo_id)
    return _jpeg(web, await asyncio.to_thread(_thumbnail, data))


# --- the consultation page's panel and its chat lines ----------------------------------------------------


async def consultation_panel(web: Web, patient_id: int, consultation_id: int) -> list[dict[str, Any]]:
    """The patient's latest skin photos for the consultation page, newest first; none where the
    caller may not see them (a doctor before accepting)."""
    try:
        records = await _service(web).history(web.me, patient_id, limit=PANEL_PHOTOS)
    except DomainError:
        return []
    if not records:
        return []
    names = await _doctor_names(web, records)
    me = web.me
    panel = []
    for found in reversed(records):
        view = photo_view(found, web.lang, names)
        url = (
            f"/doctor/skin/photos/{view.id}?consultation={consultation_id}"
            if me.is_doctor
            else f"/skin/photos/{view.id}"
        )
        panel.append({"photo": view, "url": url, "here": view.consultation_id == consultation_id})
    return panel


def chat_line(t: Translator, line: dict[str, Any]) -> dict[str, Any]:
    """A chat event the skin service posted (JSON naming the photo) in the page's language."""
    body = line.get("body")
    if line.get("side") != "event" or not isinstance(body, str) or not body.startswith("{"):
        return line
    try:
        data = json.loads(body)
    except ValueError:
        return line
    if not isinstance(data, dict) or "skin_photo_id" not in data:
        return line
    grade, lesions = data.get("grade"), data.get("lesions")
    if isinstance(grade, int) and isinstance(lesions, int):
        return {**line, "body": t("skin.chat.report", grade=grade_name(grade, t.lang), n=lesions)}
    words = str(data.get("text", ""))
    halves = words.split(" / ", 1)
    if len(halves) == 2:
        words = halves[0] if t.lang == "zh" else halves[1]
    return {**line, "body": words or t("skin.chat.report_plain")}


# --- the dermatologist's page of one photo ----------------------------------------------------------------


REVIEW_FIELDS = ("confirmed_grade", "diagnosis_code", "diagnosis_text", "notes", "lesions", "consultation_id")


def _lesion_items(raw: str | None) -> list[dict[str, Any]]:
    """[[x, y, radius, kind, (score)], …] as the editor's objects."""
    items: list[dict[str, Any]] = []
    for entry in json.loads(raw or "[]"):
        if isinstance(entry, list | tuple) and len(entry) >= 4:
            x, y, radius, kind = entry[:4]
            items.append({"x": float(x), "y": float(y), "r": float(radius), "kind": str(kind)})
    return items


async def _doctor_page(
    web: Web,
    photo_id: int,
    consultation_id: int | None,
    *,
    state: FormState = EMPTY,
    status_code: int = 200,
) -> Response:
    found, report = await _report(web, photo_id)
    photo = found.photo
    patient = await PatientService(web.session).get(web.me, photo.patient_id)
    records = await _service(web).history(web.me, photo.patient_id)
    names = await _doctor_names(web, records)
    same_view = [
        photo_view(r, web.lang, names)
        for r in records
        if r.photo.view == photo.view and r.photo.created_at <= photo.created_at
    ]
    latest = found.reviews[0] if found.reviews else None
    ai_lesions = _lesion_items(found.analysis.lesions if found.analysis else None)
    marked = (
        _lesion_items(latest.lesions) if latest is not None and latest.lesions is not None else ai_lesions
    )
    facts = _report_facts(report, web.t)
    if state.form == "review":
        form = state
        with contextlib.suppress(ValueError, TypeError):
            marked = _lesion_items(state.value("lesions")) if state.value("lesions") else marked
    else:
        grade = latest.confirmed_grade if latest is not None else None
        if grade is None:
            grade = facts["grade"]
        form = FormState(
            "review",
            {
                "confirmed_grade": "" if grade is None else str(grade),
                "diagnosis_code": (latest.diagnosis_code if latest else None) or "",
                "diagnosis_text": latest.diagnosis_text if latest else "",
                "notes": latest.notes if latest else "",
                "lesions": latest.lesions if latest is not None and latest.lesions is not None else "",
            },
        )
    query = f"?consultation={consultation_id}" if consultation_id else ""
    return web.render(
        "skin_doctor.html",
        patient=patient,
        report=report,
        photo=photo_view(found, web.lang, names),
        facts=facts,
        review=_review_view(report, web.t),
        legend=kind_legend(web.t),
        lesions_json=json.dumps(marked, separators=(",", ":")),
        lesion_count=len(marked),
        marks=[
            {**m, "cx": m["x"] * photo.width, "cy": m["y"] * photo.height, "pr": m["r"] * photo.width}
            for m in marked
        ],
        new_radius=NEW_LESION_RADIUS,
        colours=KIND_COLOURS,
        earlier=list(reversed(same_view)),
        chart=trend_chart(same_view, web.t, "/doctor/skin/photos/{id}" + query, chart_id="same-view-trend"),
        chart_views=chart_views(same_view),
        consultation_id=consultation_id,
        query=query,
        grades=grade_options(web.lang),
        f=form,
        state=state,
        status_code=status_code,
        here=f"/doctor/skin/photos/{photo_id}",
    )


@router.get("/doctor/skin/photos/{photo_id}")
async def doctor_photo(
    photo_id: Id, web: DoctorWeb, consultation: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> Response:
    """The photo and the AI's report, earlier photos of the same view, and the review form."""
    return await _doctor_page(web, photo_id, consultation)


class _BadLesions(ValueError):
    pass


def _parse_lesions(raw: str) -> list[dict[str, Any]] | None:
    """The editor's hidden field: '' (not corrected) or a JSON list of {x, y, r, kind} or
    [x, y, radius, kind] in fractions of the photo."""
    if not raw:
        return None
    if len(raw) > MAX_LESIONS_JSON:
        raise _BadLesions("too long")
    try:
        data = json.loads(raw)
    except ValueError:
        raise _BadLesions("not JSON") from None
    if not isinstance(data, list):
        raise _BadLesions("not a list")
    out: list[dict[str, Any]] = []
    for item in data:
        if isinstance(item, dict):
            out.append(
                {
                    "x": item.get("x"),
                    "y": item.get("y"),
                    "radius": item.get("r", item.get("radius")),
                    "kind": item.get("kind"),
                }
            )
        elif isinstance(item, list) and len(item) >= 4:
            out.append({"x": item[0], "y": item[1], "radius": item[2], "kind": item[3]})
        else:
            raise _BadLesions("not a lesion")
    return out


@router.post("/doctor/skin/photos/{photo_id}/review")
async def review_photo(photo_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Confirm or correct the AI's reading: grade, lesions, diagnosis and notes."""
    values = values_of(form, *REVIEW_FIELDS)
    consultation_id = _form_id(form, "consultation_id")
    try:
        lesions = _parse_lesions(values["lesions"])
    except _BadLesions:
        state = field_error(web.t, "review", "lesions", "skin.review.lesions_invalid", values)
        return await _doctor_page(web, photo_id, consultation_id, state=state, status_code=422)
    raw: dict[str, Any] = {
        "confirmed_grade": values["confirmed_grade"] or None,
        "lesions": lesions,
        "diagnosis_code": values["diagnosis_code"].upper() or None,
        "diagnosis_text": values["diagnosis_text"],
        "notes": values["notes"],
        "consultation_id": consultation_id,
    }
    try:
        data = ReviewIn.model_validate(raw)
    except ValidationError as exc:
        state = invalid(web.t, "review", exc, values)
        if "lesions" in state.fields:
            state.fields["lesions"] = web.t("skin.review.lesions_invalid")
        return await _doctor_page(web, photo_id, consultation_id, state=state, status_code=422)
    try:
        async with web.atomic():
            await _service(web).review(web.me, photo_id, data)
    except DomainError as exc:
        if exc.status_code == 404 and exc.code == "photo_not_found":
            raise
        state = failed(web.t, "review", exc, values)
        return await _doctor_page(web, photo_id, consultation_id, state=state, status_code=exc.status_code)
    query = f"consultation={consultation_id}&" if consultation_id else ""
    return web.redirect(f"/doctor/skin/photos/{photo_id}?{query}notice=skin_review_saved#review")
