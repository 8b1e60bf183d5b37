"""The skin hospital in Chromium, against a real server: the patient photographs her face (an ACNE04
photo), reads the AI report with its overlay, and is told why four unusable pictures are refused (a
black frame, a PDF named photo.jpg, a 1×1 PNG, a photo of a painted wall); the dermatologist dr.lin
opens their consultation, follows the skin panel to the photo, adds a lesion by clicking it,
confirms a grade and saves the review, which the patient then reads. Both languages, phone and
desktop widths.

The consultation comes through the JSON API of the running server: the patient asks the skin
hospital's acne clinic for a follow-up visit with dr.lin, who accepts it. Screenshots land in
$EHOSPITAL_TEST_OUTPUT (default test-output/browser), named skin-*.png.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from tests.browser.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    api_client,
    need_browser,
    screenshot_dir,
    shooter,
    sign_in,
    watch_console,
)
from tests.live import live_server
from tests.test_web_skin import REFUSED, acne_photo, need_model

if TYPE_CHECKING:
    from playwright.sync_api import FilePayload, Page, ViewportSize

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
MEMBER = "李娜 Li Na"  # the account holder herself
DOCTOR = "林芳 Lin Fang"  # dr.lin, the acne clinic's dermatologist
PREFIX = "skin"


@pytest.fixture(scope="module")
def output_dir() -> Path:
    return screenshot_dir(PREFIX)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_browser()  # no point starting a server nobody can browse
    need_model()
    with live_server(tmp_path_factory.mktemp("skin-pages")) as base:
        yield base


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (250, 245, 240)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def world(server: str) -> dict[str, Any]:
    """A follow-up consultation in the acne clinic that dr.lin accepts; the ids the test needs."""
    patient = api_client(server, "patient", "patient-demo-1")
    doctor = api_client(server, "dr.lin", "doctor-demo-1")
    member = next(p for p in patient.get("/api/v1/patients").json() if p["name"] == MEMBER)
    centre = next(c for c in patient.get("/api/v1/centres").json() if c["code"] == "skin")
    clinic = next(k for k in centre["clinics"] if k["code"] == "acne")
    doctors = patient.get("/api/v1/doctors", params={"centre_id": centre["id"]}).json()
    lin = next(d for d in doctors if d["name"] == DOCTOR)
    upload = patient.post(
        "/api/v1/uploads?purpose=evidence", files={"file": ("门诊病历.png", _png(), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    body: dict[str, Any] = {
        "patient_id": member["id"],
        "centre_id": centre["id"],
        "clinic_id": clinic["id"],
        "visit_type": "follow_up",
        "complaint": "面部痤疮反复三个月，外用药效果一般，想请医生看看照片调整方案。",
        "prior_diagnosis": "寻常痤疮",
        "evidence_ids": [upload.json()["id"]],
        "doctor_id": lin["id"],
    }
    opened = patient.post("/api/v1/consultations", json=body)
    assert opened.status_code == 201, opened.text
    accepted = doctor.post(f"/api/v1/consultations/{opened.json()['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    return {"patient_id": member["id"], "consultation_id": opened.json()["id"]}


def _file(name: str, mime_type: str, content: bytes) -> FilePayload:
    return {"name": name, "mimeType": mime_type, "buffer": content}


def _loaded(page: Page, selector: str) -> int:
    """The natural width of an image once it has loaded (0 if it failed)."""
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return i && i.complete; }", arg=selector
    )
    width: int = page.eval_on_selector(selector, "img => img.naturalWidth")
    return width


def test_skin_care_in_the_browser(server: str, world: dict[str, Any], output_dir: Path) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    shot = shooter(output_dir, PREFIX)
    pid, cid = world["patient_id"], world["consultation_id"]
    name, photo = acne_photo()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            patient_ctx = browser.new_context(locale="zh-CN", viewport=DESKTOP)
            patient_ctx.set_default_timeout(TIMEOUT_MS)
            patient = patient_ctx.new_page()
            errors: list[str] = []
            watch_console(patient, errors)

            # --- the patient's page, in Chinese, before any photo ----------------------------------
            sign_in(patient, server, "patient", "patient-demo-1", "/skin")
            expect(patient.locator("h1")).to_contain_text("皮肤管理")
            expect(patient.locator(".mainnav a[aria-current=page]")).to_have_text("皮肤")
            expect(patient.locator("#members a[aria-current=page]")).to_have_text(MEMBER)
            expect(patient.locator("#upload-consent")).not_to_be_checked()
            expect(patient.locator("#upload-photo")).to_have_attribute("capture", "user")
            expect(patient.locator("#guide")).to_contain_text("均匀的自然光")
            expect(patient.locator("#upload-consultation_id option")).to_have_count(2)
            shot(patient, "patient-empty-zh")

            # --- a real photo: the report with its overlay ----------------------------------------
            patient.set_input_files("#upload-photo", files=[_file(name, "image/jpeg", photo)])
            patient.check("#upload-view-front")
            patient.select_option("#upload-consultation_id", str(cid))
            patient.click("#upload-submit")
            expect(patient).to_have_url(re.compile(r"/skin/photos/\d+\?notice=skin_photo_analysed"))
            photo_id = int(re.search(r"/skin/photos/(\d+)", patient.url).group(1))  # type: ignore[union-attr]
            expect(patient.locator(".flash.ok")).to_contain_text("AI 报告")
            assert _loaded(patient, "#photo-image") > 0
            assert _loaded(patient, "#overlay-image") > 0, "the overlay image did not load"
            expect(patient.locator("#grade-name")).to_have_text(re.compile(r"^(轻度|中度|重度|极重度)$"))
            expect(patient.locator("#disclaimer")).to_be_visible()
            expect(patient.locator("#disclaimer")).to_contain_text("不是诊断")
            expect(patient.locator("#kinds tbody tr")).to_have_count(4)
            expect(patient.locator("#referral-link")).to_have_attribute(
                "href", re.compile(rf"^/patient/consultations/new\?patient={pid}&centre=\d+")
            )
            expect(patient.locator("#no-review")).to_be_visible()
            shot(patient, "report-zh")
            patient.click("a[data-lang=en]")
            expect(patient.locator("h1")).to_contain_text("AI skin report")
            expect(patient.locator("#disclaimer")).to_contain_text("not a diagnosis")
            assert _loaded(patient, "#overlay-image") > 0
            shot(patient, "report-en")

            # --- four pictures the checks refuse, each with its reason ------------------------------
            for index, (file_name, content, declared, codes) in enumerate(REFUSED):
                patient.goto(f"{server}/skin/{pid}")
                patient.set_input_files("#upload-photo", files=[_file(file_name, declared, content)])
                patient.check("#upload-view-left")
                patient.click("#upload-submit")
                refusal = patient.locator("#refusal")
                expect(refusal).to_be_visible()
                expect(refusal).to_have_attribute("role", "alert")
                code = refusal.get_attribute("data-code")
                assert code in codes, (file_name, code)
                expect(patient.locator("#refusal-reason")).not_to_be_empty()
                expect(patient.locator("#refusal-retake")).to_contain_text("How to retake it")
                expect(patient.locator("#upload-view-left")).to_be_checked()  # the choice is kept
                if index in (0, 3):
                    shot(patient, f"refused-{code}-en")
            patient.click("a[data-lang=zh]")  # a refused post cannot be re-shown: the page itself
            patient.goto(f"{server}/skin/{pid}")
            patient.set_input_files(
                "#upload-photo",
                files=[_file(REFUSED[3][0], REFUSED[3][2], REFUSED[3][1])],
            )
            patient.click("#upload-submit")
            expect(patient.locator("#refusal")).to_contain_text("如何重新拍摄")
            shot(patient, "refused-wall-zh")

            # --- the doctor: the consultation's skin panel, the photo, a lesion added by a click ----
            doctor_ctx = browser.new_context(locale="zh-CN", viewport=DESKTOP)
            doctor_ctx.set_default_timeout(TIMEOUT_MS)
            doctor = doctor_ctx.new_page()
            watch_console(doctor, errors)
            sign_in(doctor, server, "dr.lin", "doctor-demo-1", f"/consultations/{cid}")
            panel = doctor.locator("#skin-photos")
            expect(panel).to_contain_text("皮肤照片")
            expect(doctor.locator("#messages")).to_contain_text("AI 皮肤报告")
            expect(doctor.locator("#messages")).not_to_contain_text("skin_photo_id")
            shot(doctor, "doctor-consultation-zh")
            panel.locator(f"li[data-photo='{photo_id}'] a").click()
            expect(doctor).to_have_url(re.compile(rf"/doctor/skin/photos/{photo_id}\?consultation={cid}$"))
            expect(doctor.locator("#editor")).to_be_visible()  # the script runs (CSP allows it)
            expect(doctor.locator("#probabilities tbody tr")).to_have_count(4)
            assert _loaded(doctor, "#photo-image") > 0
            marks = doctor.locator("#marks circle.skin-mark")
            before = marks.count()
            ai_grade = doctor.locator("#grade-name").get_attribute("data-grade")
            expect(doctor.locator("#review-confirmed_grade")).to_have_value(ai_grade or "")
            shot(doctor, "doctor-photo-zh")
            doctor.locator("label.skin-pick", has=doctor.locator("input[value=pustule]")).click()
            expect(doctor.locator("input[name=add_kind][value=pustule]")).to_be_checked()
            box = doctor.locator("#marks").bounding_box()
            assert box is not None
            # An empty corner of the photo (a lesion there is unlikely to be marked already).
            doctor.mouse.click(box["x"] + box["width"] * 0.07, box["y"] + box["height"] * 0.93)
            expect(marks).to_have_count(before + 1)
            expect(doctor.locator("#mark-count")).to_contain_text(str(before + 1))
            added = marks.last
            expect(added).to_have_attribute("data-kind", "pustule")
            value = doctor.locator("#review-lesions").input_value()
            assert value.startswith("[[") and '"pustule"]]' in value, value
            # A click on a marker removes it; undo brings it back.
            added.click()
            expect(marks).to_have_count(before)
            doctor.click("#marks-undo")
            expect(marks).to_have_count(before + 1)
            grade = "2" if ai_grade != "2" else "1"
            doctor.select_option("#review-confirmed_grade", grade)
            doctor.fill("#review-diagnosis_code", "L70.0")
            doctor.fill("#review-diagnosis_text", "寻常痤疮")
            doctor.fill("#review-notes", "外用阿达帕林凝胶每晚一次，4 周后按相同构图复拍。")
            shot(doctor, "doctor-marked-zh")
            doctor.click("#review-save")
            expect(doctor.locator(".flash.ok")).to_contain_text("审阅已保存")
            expect(doctor.locator("#review-current")).to_be_visible()
            expect(doctor.locator("#review-grade")).to_have_attribute("data-grade", grade)
            expect(doctor.locator("#review-lesions-count")).to_contain_text(str(before + 1))
            expect(doctor.locator("#marks circle.skin-mark")).to_have_count(before + 1)
            shot(doctor, "doctor-reviewed-zh")
            doctor.click("a[data-lang=en]")
            expect(doctor.locator("#review-title")).to_have_text("Dermatologist's review")
            doctor.click("label[for=mode-overlay]")
            expect(doctor.locator("#mode-overlay")).to_be_checked()
            assert _loaded(doctor, "#overlay-image") > 0
            expect(doctor.locator("#overlay-image")).to_be_visible()
            expect(doctor.locator("#marks")).to_be_hidden()
            shot(doctor, "doctor-overlay-en")

            # --- the patient reads the review; the history at phone width ---------------------------
            patient.goto(f"{server}/skin/photos/{photo_id}?lang=zh")
            expect(patient.locator("#reviewed-badge")).to_be_visible()
            expect(patient.locator("#review-notes")).to_contain_text("阿达帕林")
            patient.goto(f"{server}/skin/{pid}")
            expect(patient.locator(f"#photo-table tr[data-photo='{photo_id}']")).to_contain_text(DOCTOR)
            expect(patient.locator("#trend circle.skin-point")).to_have_count(1)
            expect(patient.locator("#last-photos li.on img")).to_be_visible()
            shot(patient, "history-zh")
            phone_ctx = browser.new_context(
                locale="zh-CN", viewport=PHONE, storage_state=patient_ctx.storage_state(), is_mobile=True
            )
            phone = phone_ctx.new_page()
            watch_console(phone, errors)
            phone.goto(f"{server}/skin/{pid}?lang=zh")
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the page is {width} px wide on a 390 px phone"
            shot(phone, "phone-history-zh")
            phone.goto(f"{server}/skin/photos/{photo_id}?lang=en")
            assert _loaded(phone, "#overlay-image") > 0
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the report is {width} px wide on a 390 px phone"
            shot(phone, "phone-report-en")
            doctor_phone = browser.new_context(
                locale="zh-CN", viewport=PHONE, storage_state=doctor_ctx.storage_state(), is_mobile=True
            ).new_page()
            doctor_phone.goto(f"{server}/doctor/skin/photos/{photo_id}?consultation={cid}&lang=zh")
            width = doctor_phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"the doctor's page is {width} px wide on a 390 px phone"
            shot(doctor_phone, "phone-doctor-zh")
            assert not errors, errors  # no CSP violations or script errors in any console
        finally:
            browser.close()
