"""The skin hospital's pages without a browser: a patient uploads an ACNE04 photo and reads the AI
report; refused photos come back with the reason and how to retake; photos stay within the
family and its doctors; the dermatologist reviews with lesion corrections; the photos themselves
are served only behind the session."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from ehospital.skin.model import DEFAULT_MODEL
from tests.live import IN_CI
from tests.personas import World, open_consultation
from tests.test_web_pages import sign_in

REPO = Path(__file__).resolve().parents[1]
ACNE04_VALID = REPO.parent / "shared" / "data" / "skin" / "acne04" / "valid"
# Moderate and severe photos first: their reports recommend the acne clinic.
CANDIDATES = ("levle1_", "levle2_", "levle0_")


def _unavailable(reason: str) -> None:
    """Skip on a workstation, fail in CI (where the data and the model must be present)."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def need_model() -> None:
    if not DEFAULT_MODEL.is_file():
        _unavailable(f"the acne model {DEFAULT_MODEL} is not there yet (train it: ehospital skin train)")


@lru_cache(maxsize=1)
def _accepted_photo() -> Path | None:
    """The first ACNE04 validation photo (moderate first) that the analysis accepts."""
    from ehospital.skin.analysis import analyze
    from ehospital.skin.model import AcneModel

    model = AcneModel.load()
    for prefix in CANDIDATES:
        for path in sorted(ACNE04_VALID.glob(f"{prefix}*.jpg"))[:12]:
            if analyze(path.read_bytes(), model, overlay=False).ok:
                return path
    return None


def acne_photo() -> tuple[str, bytes]:
    """(file name, bytes) of a real acne photo the model accepts; skipped where the data is absent."""
    if not ACNE04_VALID.is_dir():
        _unavailable(f"the ACNE04 photos are not at {ACNE04_VALID}")
    need_model()
    found = _accepted_photo()
    if found is None:
        pytest.fail(f"the analysis refused every candidate photo of {ACNE04_VALID}")
    return found.name, found.read_bytes()


# --- photos the checks refuse -------------------------------------------------------------------------


def black_jpeg(size: tuple[int, int] = (800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 0, 0)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 160, 140)).save(buffer, "PNG")
    return buffer.getvalue()


def pdf_bytes() -> bytes:
    """A small, valid one-page PDF (what a patient might pick by mistake)."""
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def wall_photo(seed: int = 7, size: tuple[int, int] = (1024, 768)) -> bytes:
    """A phone photo of a beige painted wall: plaster texture at several scales, light from a
    window on the left fading to the right and down, a little sensor noise; JPEG."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = (
        1.06 + 0.14 * (1.0 - xx / w) - 0.10 * (yy / h) - 0.05 * ((xx / w - 0.3) ** 2 + (yy / h - 0.4) ** 2)
    )
    texture = np.zeros((h, w), np.float32)
    for cell, amplitude in ((3, 3.0), (12, 4.0), (48, 5.0), (160, 4.0)):
        coarse = rng.normal(0.0, 1.0, (h // cell + 2, w // cell + 2)).astype(np.float32)
        texture += amplitude * np.asarray(
            Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32
        )
    # Roller marks: faint diagonal streaks of the paint.
    texture += 1.5 * np.sin((xx + 0.6 * yy) / 9.0).astype(np.float32)
    beige = np.array([221.0, 204.0, 178.0], np.float32)
    rgb = beige * light[..., None] + texture[..., None] * np.array([1.0, 0.96, 0.9], np.float32)
    rgb += rng.normal(0.0, 1.8, rgb.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


# (file name, bytes, declared type, the refusal codes that fit)
REFUSED: tuple[tuple[str, bytes, str, frozenset[str]], ...] = (
    ("black.jpg", black_jpeg(), "image/jpeg", frozenset({"too_dark"})),
    ("photo.jpg", pdf_bytes(), "image/jpeg", frozenset({"unsupported_format", "corrupt_image"})),
    ("dot.png", tiny_png(), "image/png", frozenset({"too_small"})),
    ("wall.jpg", wall_photo(), "image/jpeg", frozenset({"not_enough_skin", "not_assessable"})),
)


# --- helpers -------------------------------------------------------------------------------------------


async def upload_via_page(
    client: httpx.AsyncClient,
    csrf: str,
    patient_id: int,
    photo: tuple[str, bytes],
    *,
    view: str = "front",
    consultation_id: int | None = None,
    consent: bool = False,
    content_type: str = "image/jpeg",
) -> httpx.Response:
    data = {"csrf": csrf, "view": view}
    if consultation_id is not None:
        data["consultation_id"] = str(consultation_id)
    if consent:
        data["consent"] = "1"
    return await client.post(
        f"/skin/{patient_id}/photos?lang=en", data=data, files={"photo": (photo[0], photo[1], content_type)}
    )


def photo_id_of(response: httpx.Response) -> int:
    assert response.status_code == 303, response.text[:3000]
    found = re.fullmatch(r"/skin/photos/(\d+)\?notice=skin_photo_analysed", response.headers["location"])
    assert found, response.headers["location"]
    return int(found.group(1))


async def skin_consultation(client: httpx.AsyncClient, world: World) -> int:
    """Alice's consultation in the skin centre, accepted by Dr Skin of the acne clinic."""
    consultation = await open_consultation(client, world, centre=world.skin, doctor=world.dr_skin)
    accepted = await client.post(
        f"/api/v1/consultations/{consultation['id']}/accept", headers=world.dr_skin.headers
    )
    assert accepted.status_code == 200, accepted.text
    consultation_id: int = consultation["id"]
    return consultation_id


# --- the tests -----------------------------------------------------------------------------------------


async def test_the_patient_uploads_a_photo_and_reads_the_report(
    client: httpx.AsyncClient, world: World
) -> None:
    photo = acne_photo()
    patient_id = world.alice.family[0].id
    csrf = await sign_in(client, "alice")
    page = await client.get("/skin?lang=en")
    assert page.status_code == 200, page.text
    assert 'href="/skin" aria-current="page"' in page.text  # the nav link
    assert 'accept="image/jpeg,image/png,image/webp" capture="user"' in page.text
    assert re.search(r'<input type="checkbox" name="consent" value="1" id="upload-consent">', page.text)
    assert "How to take a good photo" in page.text and "No photos yet" in page.text
    assert "style=" not in page.text and "<script>" not in page.text  # the CSP allows neither

    done = await upload_via_page(client, csrf, patient_id, photo, view="front")
    photo_id = photo_id_of(done)
    report = await client.get(done.headers["location"].replace("?", "?lang=en&"))
    assert report.status_code == 200, report.text
    text = report.text
    assert "Your photo was analysed" in text
    assert f'id="photo-image" src="/skin/photos/{photo_id}/image"' in text
    assert f'id="overlay-image" src="/skin/photos/{photo_id}/overlay"' in text
    grade = re.search(r'id="grade-name" data-grade="(\d)">([^<]+)<', text)
    assert grade and grade.group(2) in ("mild", "moderate", "severe", "very severe")
    assert re.search(r'id="lesion-count">\d+<', text)
    assert 'id="disclaimer"' in text and "It is not a diagnosis" in text
    assert "Do not squeeze" in text  # the advice of every grade says so
    referral = re.search(r'id="referral-link" href="([^"]+)"', text)
    assert referral and referral.group(1).startswith(f"/patient/consultations/new?patient={patient_id}")
    assert f"centre={world.skin.id}" in referral.group(1)
    assert 'data-consent="false"' in text  # the box was left unchecked
    assert "style=" not in text
    zh = await client.get(f"/skin/photos/{photo_id}?lang=zh")
    assert "AI 皮肤报告" in zh.text and "不是诊断" in zh.text

    # The photo, its overlay and a thumbnail: JPEG, never cached.
    for suffix in ("image", "overlay", "thumb"):
        image = await client.get(f"/skin/photos/{photo_id}/{suffix}")
        assert image.status_code == 200, (suffix, image.text[:500])
        assert image.headers["content-type"] == "image/jpeg"
        assert image.headers["cache-control"] == "private, no-store"
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert decoded.format == "JPEG" and min(decoded.size) > 0
            if suffix == "thumb":
                assert max(decoded.size) <= 320

    # The history: the table row, the trend chart and the last photo as the framing guide.
    history = await client.get(f"/skin/{patient_id}?lang=en")
    assert f'<tr data-photo="{photo_id}" data-view="front">' in history.text
    assert '<svg class="skin-chart" id="trend"' in history.text and f'data-photo="{photo_id}"' in history.text
    assert '<li data-view="front" class="on">' in history.text
    assert f'src="/skin/photos/{photo_id}/thumb"' in history.text

    # Consent to improve the model, then withdrawn.
    given = await client.post(f"/skin/photos/{photo_id}/consent", data={"csrf": csrf, "training": "1"})
    assert given.status_code == 303 and "notice=skin_consent_given" in given.headers["location"]
    assert 'data-consent="true"' in (await client.get(f"/skin/photos/{photo_id}")).text
    withdrawn = await client.post(f"/skin/photos/{photo_id}/consent", data={"csrf": csrf, "training": "0"})
    assert withdrawn.status_code == 303
    assert 'data-consent="false"' in (await client.get(f"/skin/photos/{photo_id}")).text

    # The follow-up schedule: refused with a reason, then saved.
    bad = await client.post(
        f"/skin/{patient_id}/followup?lang=en",
        data={"csrf": csrf, "interval_days": "3", "views": "front", "active": "1"},
    )
    assert bad.status_code == 422 and "from 7 to 180" in bad.text
    assert 'id="followup-interval_days" type="number" name="interval_days" value="3"' in bad.text
    saved = await client.post(
        f"/skin/{patient_id}/followup",
        data={"csrf": csrf, "interval_days": "28", "views": ["front", "left"], "active": "1"},
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith(
        "notice=skin_followup_saved#followup"
    )
    page = await client.get(f"/skin/{patient_id}?lang=en")
    assert re.search(r'id="next-due">\s*Next photos due on \d{4}-\d{2}-\d{2}', page.text)
    assert 'id="followup-view-left" checked' in page.text

    # Deleting: the report and the files are gone.
    deleted = await client.post(f"/skin/photos/{photo_id}/delete", data={"csrf": csrf})
    assert (
        deleted.status_code == 303
        and deleted.headers["location"] == f"/skin/{patient_id}?notice=skin_photo_deleted"
    )
    assert (await client.get(f"/skin/photos/{photo_id}")).status_code == 404
    assert (await client.get(f"/skin/photos/{photo_id}/image")).status_code == 404


@pytest.mark.parametrize(("name", "content", "declared", "codes"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_refused_photo_says_why_and_how_to_retake(
    client: httpx.AsyncClient, world: World, name: str, content: bytes, declared: str, codes: frozenset[str]
) -> None:
    need_model()
    patient_id = world.alice.family[1].id  # Sam, the son: the chosen member stays chosen
    csrf = await sign_in(client, "alice")
    refused = await upload_via_page(
        client, csrf, patient_id, (name, content), view="left", content_type=declared
    )
    assert refused.status_code == 422, refused.text[:2000]
    box = re.search(r'<div class="skin-refusal" role="alert" id="refusal" data-code="(\w+)">', refused.text)
    assert box, refused.text[:4000]
    assert box.group(1) in codes, box.group(1)
    reason = re.search(r'id="refusal-reason">([^<]+)<', refused.text)
    retake = re.search(
        r'id="refusal-retake">\s*<strong>How to retake it</strong>\s*<p>([^<]+)</p>', refused.text
    )
    assert reason and reason.group(1).strip(), refused.text[:3000]
    assert retake and retake.group(1).strip()
    assert re.search(r"[\u4e00-\u9fff]", reason.group(1)) is None  # worded in the page's language
    assert f'action="/skin/{patient_id}/photos#upload"' in refused.text
    assert f'data-patient="{patient_id}" aria-current="page"' in refused.text
    assert 'value="left" id="upload-view-left" checked' in refused.text
    # Nothing was kept.
    history = await client.get(f"/skin/{patient_id}?lang=en")
    assert "No photos yet" in history.text
    # In Chinese, the same refusal in Chinese.
    zh = await client.post(
        f"/skin/{patient_id}/photos?lang=zh",
        data={"csrf": csrf, "view": "front"},
        files={"photo": (name, content, declared)},
    )
    assert zh.status_code == 422 and "如何重新拍摄" in zh.text
    zh_reason = re.search(r'id="refusal-reason">([^<]+)<', zh.text)
    assert zh_reason and re.search(r"[\u4e00-\u9fff]", zh_reason.group(1))


async def test_the_upload_form_refuses_what_is_not_a_photo_upload(
    client: httpx.AsyncClient, world: World
) -> None:
    patient_id = world.alice.family[0].id
    csrf = await sign_in(client, "alice")
    nothing = await client.post(
        f"/skin/{patient_id}/photos?lang=en",
        data={"csrf": csrf, "view": "right"},
        files={"photo": ("", b"", "application/octet-stream")},
    )
    assert nothing.status_code == 422 and "Choose a photo to upload." in nothing.text
    assert 'value="right" id="upload-view-right" checked' in nothing.text
    odd_view = await client.post(
        f"/skin/{patient_id}/photos?lang=en",
        data={"csrf": csrf, "view": "back"},
        files={"photo": ("x.jpg", black_jpeg(), "image/jpeg")},
    )
    assert odd_view.status_code == 422
    huge = await client.post(
        f"/skin/{patient_id}/photos?lang=en",
        data={"csrf": csrf, "view": "front"},
        files={"photo": ("huge.jpg", b"\xff\xd8" + bytes(15 * 1024 * 1024), "image/jpeg")},
    )
    assert huge.status_code == 413 and 'data-code="file_too_large"' in huge.text
    assert "at most 15 MiB" in huge.text
    forged = await client.post(
        f"/skin/{patient_id}/photos", data={"csrf": "0" * 64}, files={"photo": ("x.jpg", b"x", "image/jpeg")}
    )
    assert forged.status_code == 403


async def test_other_families_and_unrelated_doctors_see_nothing(
    client: httpx.AsyncClient, world: World
) -> None:
    photo = acne_photo()
    patient_id = world.alice.family[0].id
    csrf = await sign_in(client, "alice")
    photo_id = photo_id_of(await upload_via_page(client, csrf, patient_id, photo))

    # Without a session the photos are not served: the sign-in page instead.
    client.cookies.clear()
    for suffix in ("", "/image", "/overlay", "/thumb"):
        anonymous = await client.get(f"/skin/photos/{photo_id}{suffix}")
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next="), (
            suffix
        )
    api = await client.get(f"/api/v1/skin/photos/{photo_id}/image")
    assert api.status_code == 401

    csrf = await sign_in(client, "bob")
    for path in (
        f"/skin/photos/{photo_id}",
        f"/skin/photos/{photo_id}/image",
        f"/skin/photos/{photo_id}/overlay",
        f"/skin/photos/{photo_id}/thumb",
        f"/skin/{patient_id}",
    ):
        assert (await client.get(path)).status_code == 404, path
    for path, data in (
        (f"/skin/photos/{photo_id}/consent", {"training": "1"}),
        (f"/skin/photos/{photo_id}/delete", {}),
        (f"/skin/{patient_id}/followup", {"interval_days": "28", "views": "front", "active": "1"}),
    ):
        assert (await client.post(path, data={"csrf": csrf, **data})).status_code == 404, path
    bob_upload = await upload_via_page(client, csrf, patient_id, photo)
    assert bob_upload.status_code == 404

    # A verified doctor who never saw Alice: 404 everywhere; the patient's pages are not for doctors.
    csrf = await sign_in(client, "dr.dia2")
    assert (await client.get(f"/doctor/skin/photos/{photo_id}")).status_code == 404
    assert (await client.get(f"/skin/photos/{photo_id}/image")).status_code == 404
    review = await client.post(
        f"/doctor/skin/photos/{photo_id}/review", data={"csrf": csrf, "confirmed_grade": "1"}
    )
    assert review.status_code == 404
    assert (await client.get(f"/skin/photos/{photo_id}")).status_code == 403
    assert (await client.get("/skin")).status_code == 403


async def test_the_dermatologist_reviews_with_lesion_corrections(
    client: httpx.AsyncClient, world: World
) -> None:
    photo = acne_photo()
    patient_id = world.alice.family[0].id
    consultation_id = await skin_consultation(client, world)
    csrf = await sign_in(client, "alice")
    page = await client.get(f"/skin/{patient_id}?lang=en")
    assert f'<option value="{consultation_id}">Consultation #{consultation_id}' in page.text
    photo_id = photo_id_of(
        await upload_via_page(client, csrf, patient_id, photo, consultation_id=consultation_id, consent=True)
    )
    report = await client.get(f"/skin/photos/{photo_id}?lang=en")
    assert 'data-consent="true"' in report.text and 'id="no-review"' in report.text

    # The consultation page shows the panel and the report's line in the chat, in words.
    csrf = await sign_in(client, "dr.skin")
    consultation = await client.get(f"/consultations/{consultation_id}?lang=en")
    assert consultation.status_code == 200
    assert 'id="skin-photos"' in consultation.text and 'href="/static/skin.css"' in consultation.text
    link = f'href="/doctor/skin/photos/{photo_id}?consultation={consultation_id}"'
    assert link in consultation.text
    assert "AI skin report:" in consultation.text and "skin_photo_id" not in consultation.text
    polled = await client.get(f"/consultations/{consultation_id}/messages.json")
    assert all("skin_photo_id" not in m["body"] for m in polled.json()["messages"])

    doctor_page = await client.get(f"/doctor/skin/photos/{photo_id}?consultation={consultation_id}&lang=en")
    assert doctor_page.status_code == 200, doctor_page.text[:2000]
    text = doctor_page.text
    assert 'id="probabilities"' in text and text.count('<tr data-grade="') == 4
    ai_grade = re.search(r'id="grade-name" data-grade="(\d)"', text)
    assert ai_grade
    assert re.search(rf'<option value="{ai_grade.group(1)}" selected>', text)  # preset to the AI's grade
    assert 'name="lesions" id="review-lesions" value=""' in text
    assert re.search(r'id="stage" data-lesions="\[', text)
    assert f'<input type="hidden" name="consultation_id" value="{consultation_id}">' in text
    assert 'src="/static/skin.js"' in text and "style=" not in text
    assert f'src="/skin/photos/{photo_id}/image"' in text
    assert (await client.get(f"/skin/photos/{photo_id}/overlay")).status_code == 200  # the doctor may see it

    form = {
        "csrf": csrf,
        "consultation_id": str(consultation_id),
        "confirmed_grade": "2",
        "diagnosis_code": "l70.0",
        "diagnosis_text": "Acne vulgaris",
        "notes": "Start topical adapalene; photos again in 4 weeks.",
    }
    bad = await client.post(
        f"/doctor/skin/photos/{photo_id}/review?lang=en", data={**form, "lesions": "[[2, 0.5"}
    )
    assert bad.status_code == 422 and 'id="review-lesions-error"' in bad.text
    assert "could not be read" in bad.text and "Start topical adapalene" in bad.text  # kept
    out_of_photo = json.dumps([[1.5, 0.5, 0.02, "papule"]])
    bad = await client.post(
        f"/doctor/skin/photos/{photo_id}/review?lang=en", data={**form, "lesions": out_of_photo}
    )
    assert bad.status_code == 422
    lesions = [[0.42, 0.37, 0.02, "papule"], [0.61, 0.55, 0.025, "pustule"], [0.3, 0.7, 0.03, "nodule_cyst"]]
    saved = await client.post(
        f"/doctor/skin/photos/{photo_id}/review", data={**form, "lesions": json.dumps(lesions)}
    )
    assert saved.status_code == 303, saved.text[:3000]
    assert saved.headers["location"] == (
        f"/doctor/skin/photos/{photo_id}?consultation={consultation_id}&notice=skin_review_saved#review"
    )
    after = await client.get(saved.headers["location"].split("#")[0] + "&lang=en")
    assert "Your review was saved" in after.text
    assert 'id="review-grade" data-grade="2">severe<' in after.text
    assert "3 lesions (corrected)" in after.text and "L70.0" in after.text
    assert after.text.count('class="skin-mark"') == 3  # the editor starts from the corrected lesions
    stored = await client.get(f"/api/v1/skin/photos/{photo_id}", headers=world.dr_skin.headers)
    review = stored.json()["review"]
    assert review["confirmed_grade"] == 2 and review["diagnosis_code"] == "L70.0"
    assert [le["kind"] for le in review["lesions"]] == ["papule", "pustule", "nodule_cyst"]
    assert review["consultation_id"] == consultation_id

    # Without corrections (no script), the grade, diagnosis and notes alone are saved.
    plain = await client.post(
        f"/doctor/skin/photos/{photo_id}/review", data={**form, "lesions": "", "confirmed_grade": "1"}
    )
    assert plain.status_code == 303
    stored = await client.get(f"/api/v1/skin/photos/{photo_id}", headers=world.dr_skin.headers)
    assert stored.json()["review"]["confirmed_grade"] == 1 and stored.json()["review"]["lesions"] is None

    # The patient reads the review in her report and in the history.
    await sign_in(client, "alice")
    report = await client.get(f"/skin/photos/{photo_id}?lang=en")
    assert (
        'id="reviewed-badge"' in report.text and 'id="review-grade" data-grade="1">moderate<' in report.text
    )
    assert "Start topical adapalene" in report.text and "dr.skin" in report.text
    history = await client.get(f"/skin/{patient_id}?lang=en")
    row = re.search(rf'<tr data-photo="{photo_id}".*?</tr>', history.text, re.S)
    assert row and "dr.skin" in row.group(0) and "doctor: moderate" in row.group(0)
    # The patient's own consultation page shows the panel too, linking to her report.
    page = await client.get(f"/consultations/{consultation_id}")
    assert f'href="/skin/photos/{photo_id}"' in page.text


# --- the pieces without a database -----------------------------------------------------------------------


def _point(photo_id: int, day: int, view: str, lesions: int, grade: int, confirmed: int | None = None) -> Any:
    from ehospital.web.pages.skin import PhotoView

    taken = datetime(2026, 3, 1, 9, 30, tzinfo=UTC) + timedelta(days=day)
    return PhotoView(
        id=photo_id,
        patient_id=1,
        consultation_id=None,
        view=view,
        taken_at=taken,
        taken=taken.strftime("%Y-%m-%d %H:%M"),
        date=taken.strftime("%Y-%m-%d"),
        grade=grade,
        grade_name="",
        lesions=lesions,
        referral=grade > 0,
        reviewed_by=None,
        confirmed_grade=confirmed,
        confirmed_name="",
        corrected_lesions=None,
        consent=False,
        has_overlay=True,
    )


def test_the_trend_chart_draws_the_grade_bands_and_a_linked_point_per_photo() -> None:
    from ehospital.web.i18n import Translator
    from ehospital.web.pages.skin import chart_views, trend_chart

    points = [
        _point(1, 0, "front", 34, 2),
        _point(2, 28, "front", 18, 1, confirmed=1),
        _point(3, 30, "left", 12, 1),
        _point(4, 56, "front", 4, 0),
        _point(5, 84, "front", 130, 3),
    ]
    svg = str(trend_chart(points, Translator("en"), "/skin/photos/{id}"))
    assert svg.startswith('<svg class="skin-chart" id="trend"') and svg.endswith("</svg>")
    assert 'role="img"' in svg and '<title id="trend-title">Lesion count over time</title>' in svg
    assert "style=" not in svg and "<script" not in svg
    assert [f"b{g}" in svg for g in range(4)] == [True] * 4
    assert svg.count('<circle class="skin-point') == 5
    assert svg.count('<polyline class="skin-line v-front"') == 1  # one photo of the left: no line
    assert 'href="/skin/photos/2"' in svg and "skin-point v-front reviewed" in svg
    assert ">150<" in svg  # the axis reaches past 100 (130 and a margin), so its top is labelled
    assert "2026-03-01" in svg and "2026-05-24" in svg  # the first and the last dates
    assert chart_views(points) == ["front", "left"]
    # Escaped: a link template cannot inject markup.
    assert "<b>" not in str(trend_chart(points[:1], Translator("zh"), "/x?<b>{id}"))
    assert str(trend_chart([], Translator("en"), "/skin/photos/{id}")) == ""


def test_chat_lines_of_the_skin_service_are_worded_for_the_reader() -> None:
    from ehospital.web.i18n import Translator
    from ehospital.web.pages.skin import chat_line

    body = json.dumps(
        {
            "skin_photo_id": 7,
            "text": "AI 皮肤报告:痤疮中度,12 个皮损 / AI skin report: moderate acne, 12 lesions",
        },
        ensure_ascii=False,
    )
    line = {"side": "event", "body": body}
    assert chat_line(Translator("en"), line)["body"] == "AI skin report: moderate acne, 12 lesions"
    assert chat_line(Translator("zh"), line)["body"].startswith("AI 皮肤报告")
    structured = {"side": "event", "body": json.dumps({"skin_photo_id": 7, "grade": 2, "lesions": 30})}
    assert chat_line(Translator("en"), structured)["body"] == "AI skin report: severe acne, 30 lesions"
    other = {"side": "mine", "body": '{"skin_photo_id": 1}'}
    assert chat_line(Translator("en"), other) is other  # what a person typed is shown as typed


def test_the_lesion_editor_field_is_read_strictly() -> None:
    from ehospital.web.pages.skin import _BadLesions, _parse_lesions

    assert _parse_lesions("") is None  # not corrected
    assert _parse_lesions("[]") == []  # corrected to none at all
    assert _parse_lesions(
        '[[0.5, 0.25, 0.02, "papule"], {"x": 0.1, "y": 0.2, "r": 0.03, "kind": "pustule"}]'
    ) == [
        {"x": 0.5, "y": 0.25, "radius": 0.02, "kind": "papule"},
        {"x": 0.1, "y": 0.2, "radius": 0.03, "kind": "pustule"},
    ]
    for bad in ("[[0.5", '{"x": 1}', "[1, 2]", "[" + '[0.1, 0.1, 0.01, "papule"],' * 20_000 + "]"):
        with pytest.raises(_BadLesions):
            _parse_lesions(bad)
