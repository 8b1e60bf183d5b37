"""A patient and a doctor go through a follow-up consultation in Chromium, against a real server.

The server is a subprocess (`ehospital demo`, then `ehospital serve`) on a fresh SQLite data
directory; a screenshot of each main step lands in $EHOSPITAL_TEST_OUTPUT (default
test-output/browser).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image, ImageDraw

from tests.browser.common import CHROMIUM, CHROMIUM_ARGS, REPO, need_browser
from tests.live import live_server

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000
VIEWPORT: ViewportSize = {"width": 1280, "height": 860}


@pytest.fixture(scope="module")
def output_dir() -> Path:
    folder = Path(os.environ.get("EHOSPITAL_TEST_OUTPUT") or REPO / "test-output" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ehospital demo` then `ehospital serve` on a free port; yields the base URL."""
    need_browser()  # no point starting a server nobody can browse
    with live_server(tmp_path_factory.mktemp("browser-data")) as base:
        yield base


@pytest.fixture(scope="module")
def evidence_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPEG that looks a little like a lab report."""
    path = tmp_path_factory.mktemp("images") / "hba1c-report.jpg"
    image = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 800, 70), fill=(11, 122, 117))
    draw.text((24, 24), "Huaxia Hospital - Laboratory report", fill="white")
    for row, (name, value) in enumerate(
        (("HbA1c", "8.1 %"), ("Fasting glucose", "9.2 mmol/L"), ("LDL-C", "2.9"))
    ):
        y = 120 + row * 50
        draw.text((40, y), name, fill="black")
        draw.text((420, y), value, fill="black")
        draw.line((40, y + 30, 760, y + 30), fill=(220, 220, 220))
    draw.text((40, 520), "Diagnosis: type 2 diabetes mellitus (E11.9)", fill="black")
    image.save(path, "JPEG", quality=85)
    return path


@pytest.fixture(scope="module")
def chat_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "glucose-meter.png"
    image = Image.new("RGB", (320, 240), (240, 248, 255))
    ImageDraw.Draw(image).text((40, 100), "Glucose 8.6 mmol/L", fill="black")
    image.save(path, "PNG")
    return path


def _shooter(output_dir: Path, prefix: str) -> Any:
    """shot(page, name): a full-page screenshot named <prefix>-<step>-<name>.png."""
    steps = iter(range(1, 100))

    def shot(page: Any, name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(output_dir / f"{prefix}-{next(steps):02d}-{name}.png"), full_page=True)

    return shot


def _sign_in(page: Any, server: str, username: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server}/")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")


def test_follow_up_consultation_in_the_browser(
    server: str, output_dir: Path, evidence_photo: Path, chat_photo: Path
) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    shot = _shooter(output_dir, "flow")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            patient_ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
            doctor_ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
            patient_ctx.set_default_timeout(TIMEOUT_MS)
            doctor_ctx.set_default_timeout(TIMEOUT_MS)
            patient = patient_ctx.new_page()
            doctor = doctor_ctx.new_page()

            # --- the patient signs in (Chinese), then switches to English ---------------------------
            patient.goto(f"{server}/patient")
            expect(patient).to_have_url(re.compile(r"/login\?next=%2Fpatient$"))
            expect(patient.locator("h1")).to_have_text("登录")
            shot(patient, "patient-login-zh")
            # A newcomer would follow the sign-up link; one look at that page, then back.
            patient.click("#register-link")
            expect(patient.locator("h1")).to_have_text("注册新账户")
            expect(patient.locator("#doctors-note")).to_be_visible()
            _shooter(output_dir, "signup")(patient, "register-zh")
            patient.go_back()
            expect(patient).to_have_url(re.compile(r"/login\?next=%2Fpatient$"))
            patient.fill("#login-username", "patient")
            patient.fill("#login-password", "wrong-password")
            patient.click("#login-form button[type=submit]")
            expect(patient.locator(".flash.error")).to_contain_text("用户名或密码错误")
            patient.fill("#login-password", "patient-demo-1")
            patient.click("#login-form button[type=submit]")
            expect(patient).to_have_url(f"{server}/patient")
            expect(patient.locator("h1")).to_have_text("我的家庭成员")
            session = [c for c in patient_ctx.cookies() if c["name"] == "ehospital_session"]
            assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Lax", session
            expect(patient.locator("#family")).to_contain_text("王强 Wang Qiang")
            shot(patient, "patient-family-zh")
            patient.click("a[data-lang=en]")
            expect(patient.locator("h1")).to_have_text("My family")
            expect(patient.locator("html")).to_have_attribute("lang", "en")
            shot(patient, "patient-family-en")

            # --- a first visit is refused with a clear message ----------------------------------------
            patient.click(".mainnav >> text=Start a consultation")
            expect(patient.locator("h1")).to_have_text("Start a follow-up consultation")
            member = patient.locator("#new-patient_id option", has_text="Wang Qiang").get_attribute("value")
            centre = patient.locator("#new-centre_id option", has_text="Diabetes Centre").get_attribute(
                "value"
            )
            assert member and centre
            patient.select_option("#new-patient_id", member)
            patient.select_option("#new-centre_id", centre)
            # Only the diabetes centre's doctors are offered once the centre is chosen (app.js).
            expect(patient.locator("#new-doctor_id option", has_text="Lin Fang")).to_be_hidden()
            patient.check("input[name=visit_type][value=first]")
            patient.fill("#new-complaint", "Fasting glucose around 9 mmol/L for two weeks despite metformin.")
            patient.fill("#new-prior_diagnosis", "Type 2 diabetes")
            patient.fill("#new-prior_institution", "Huaxia Hospital of Beijing")
            patient.set_input_files("#new-evidence", str(evidence_photo))
            patient.click("#new-consultation button[type=submit]")
            error = patient.locator(".flash.error")
            expect(error).to_contain_text("only for follow-up visits")
            expect(error).to_contain_text("first_visit_not_allowed")
            expect(patient.locator("#new-complaint")).to_have_value(re.compile("Fasting glucose"))
            shot(patient, "patient-first-visit-refused-en")

            # --- the follow-up visit, with an evidence photo -------------------------------------------
            patient.check("input[name=visit_type][value=follow_up]")
            patient.set_input_files("#new-evidence", str(evidence_photo))
            patient.click("#new-consultation button[type=submit]")
            expect(patient).to_have_url(re.compile(r"/consultations/\d+"))
            cid = re.search(r"/consultations/(\d+)", patient.url)
            assert cid
            consultation_id = cid.group(1)
            expect(patient.locator(".flash.ok")).to_contain_text("Your consultation was submitted")
            expect(patient.locator("h1 .badge")).to_have_text("Waiting for a doctor")
            expect(patient.locator("#evidence img")).to_have_count(1)
            patient.fill(
                "#msg-body", "Hello doctor, my fasting glucose is still high. Should I change the dose?"
            )
            patient.click("#message-form button[type=submit]")
            expect(patient.locator("#messages")).to_contain_text("Should I change the dose?")
            shot(patient, "patient-consultation-requested-en")

            # --- the doctor (Chinese) accepts from the queue -----------------------------------------
            _sign_in(doctor, server, "dr.zhang", "doctor-demo-1")
            expect(doctor).to_have_url(f"{server}/doctor")
            expect(doctor.locator("h1")).to_have_text("待接诊问诊")
            item = doctor.locator(f"article[data-consultation='{consultation_id}']")
            expect(item).to_contain_text("Fasting glucose around 9 mmol/L")
            shot(doctor, "doctor-queue-zh")
            item.locator("button[type=submit]").click()
            expect(doctor).to_have_url(re.compile(rf"/consultations/{consultation_id}"))
            expect(doctor.locator("h1 .badge")).to_have_text("已接诊")
            expect(doctor.locator("#messages")).to_contain_text("Should I change the dose?")
            thumb = doctor.locator("#evidence img")
            expect(thumb).to_have_count(1)
            assert thumb.evaluate("img => img.complete && img.naturalWidth > 0"), (
                "the evidence photo did not load"
            )

            # --- the doctor replies (with a photo); the patient's page shows it without a reload -------
            doctor.fill("#msg-body", "请继续服用二甲双胍，每日两次，每次 500 mg，并每天监测空腹血糖。")
            doctor.set_input_files("#msg-image", str(chat_photo))
            doctor.click("#message-form button[type=submit]")
            expect(doctor.locator("#messages")).to_contain_text("每天监测空腹血糖")
            expect(doctor.locator("#messages img.chat-img")).to_have_count(1)
            expect(patient.locator("#messages")).to_contain_text("每天监测空腹血糖")
            expect(patient.locator("#messages img.chat-img")).to_have_count(1)
            shot(patient, "patient-sees-reply-en")

            # --- diagnosis and completion ------------------------------------------------------------
            doctor.fill("#dx-code", "E11")
            doctor.fill("#dx-text", "2型糖尿病")
            doctor.fill("#dx-code", "11.9")
            doctor.click("#diagnosis-form button[type=submit]")
            expect(doctor.locator("#diagnosis-form .field-error")).to_contain_text("E11.9")
            doctor.fill("#dx-code", "E11.9")
            doctor.click("#diagnosis-form button[type=submit]")
            expect(doctor.locator("#diagnosis")).to_contain_text("E11.9")
            shot(doctor, "doctor-diagnosis-zh")

            # --- the doctor prescribes metformin on the pad (autocomplete), then signs ------------------
            pad = doctor.locator("#rx-pad")
            expect(pad).to_be_visible()
            doctor.select_option("#rx-pharmacy_id", label="康健大药房")
            doctor.fill("#rx-drug_code_1", "二甲双胍")
            suggestion = doctor.locator("#suggest-1 button[data-code='metformin-500mg-tab']")
            expect(suggestion).to_be_visible()
            suggestion.click()
            expect(doctor.locator("#rx-drug_code_1")).to_have_value("metformin-500mg-tab")
            expect(doctor.locator("#rx-drug-label-1")).to_contain_text("二甲双胍 500 mg")
            # The clinical check runs as she types: 1,000 mg three times a day is over the label.
            doctor.fill("#rx-dose_1", "1000")
            doctor.select_option("#rx-frequency_1", "tid")
            live = doctor.locator("#rx-clinical")
            expect(live).to_contain_text("超过说明书成人最大日剂量2550 mg")
            shot(doctor, "doctor-rx-live-check-zh")
            doctor.fill("#rx-dose_1", "500")
            doctor.select_option("#rx-frequency_1", "bid")
            expect(live).to_contain_text("临床用药审核未发现")
            doctor.fill("#rx-days_1", "7")
            doctor.fill("#rx-quantity_1", "14")
            doctor.fill("#rx-instructions_1", "餐后服用")
            doctor.click("#rx-save")
            expect(doctor.locator(".flash.ok")).to_contain_text("处方草稿已保存")
            expect(doctor.locator("#rx-pad .ok-text")).to_be_visible()
            expect(doctor.locator("#rx-failures-1")).to_have_count(0)
            shot(doctor, "doctor-rx-pad-zh")
            doctor.click("#rx-sign")
            expect(doctor.locator(".flash.ok")).to_contain_text("处方已签名")
            signed = doctor.locator("#prescriptions article.rx-card").first
            expect(signed.locator(".badge")).to_have_text("待药师审核")
            expect(signed.locator(".fingerprint")).to_be_visible()
            rx_id = signed.get_attribute("data-prescription")
            shot(doctor, "doctor-rx-signed-zh")

            # --- the pharmacist (English) reviews and approves ----------------------------------------
            pharmacist_ctx = browser.new_context(locale="en-GB", viewport=VIEWPORT)
            pharmacist_ctx.set_default_timeout(TIMEOUT_MS)
            pharmacist = pharmacist_ctx.new_page()
            _sign_in(pharmacist, server, "pharmacist", "pharmacist-demo-1")
            expect(pharmacist).to_have_url(f"{server}/pharmacy")
            expect(pharmacist.locator("h1")).to_have_text("待审核处方")  # the account's language
            pharmacist.click("a[data-lang=en]")
            expect(pharmacist.locator("h1")).to_have_text("Prescriptions to review")
            row = pharmacist.locator(f"#review-queue tr[data-prescription='{rx_id}']")
            expect(row).to_contain_text("E11.9")
            row.locator("a").click()
            expect(pharmacist.locator("#patient-context")).to_contain_text("Wang Qiang")
            expect(pharmacist.locator("#prescription")).to_contain_text("metformin 500 mg")
            shot(pharmacist, "pharmacist-review-en")
            pharmacist.click("#review-approve")
            expect(pharmacist.locator(".flash.ok")).to_have_text("The prescription was approved.")
            expect(pharmacist.locator(f"tr[data-prescription='{rx_id}']")).to_have_count(0)
            pharmacist_ctx.close()
            doctor.fill("#done-summary", "血糖控制欠佳，继续二甲双胍，两周后复诊并复查糖化血红蛋白。")
            doctor.click("#complete-form button[type=submit]")
            expect(doctor.locator("h1 .badge")).to_have_text("已完成")
            expect(doctor.locator("#message-form")).to_have_count(0)
            shot(doctor, "doctor-completed-zh")

            # --- the patient sees the completed consultation --------------------------------------------
            # The poller sees the state change and reloads the page; a reload would show it too.
            expect(patient.locator("h1 .badge")).to_have_text("Completed")
            expect(patient.locator("#diagnosis")).to_contain_text("E11.9")
            expect(patient.locator("#summary")).to_contain_text("两周后复诊")
            expect(patient.locator("#messages")).to_contain_text("The consultation was completed")
            shot(patient, "patient-completed-en")
            patient_rx = patient.locator(f"#prescriptions article[data-prescription='{rx_id}']")
            expect(patient_rx.locator(".badge[data-status]")).to_have_text("Approved")
            expect(patient_rx).to_contain_text("metformin 500 mg")
            patient.click(".mainnav >> text=My prescriptions")
            expect(
                patient.locator(f"#my-prescriptions article[data-prescription='{rx_id}']")
            ).to_contain_text("bid · twice a day")
            shot(patient, "patient-prescriptions-en")

            # --- the patient pays; the pharmacy dispenses and delivers -------------------------------
            card = patient.locator(f"#my-prescriptions article[data-prescription='{rx_id}']")
            order_id = card.locator(".order-box").get_attribute("data-order")
            card.locator("form[id^='order-pay-'] button").click()  # lands on the order's page
            expect(patient).to_have_url(re.compile(rf"/patient/orders/{order_id}"))
            expect(patient.locator("h1 [data-order-status]")).to_have_attribute("data-order-status", "paid")
            staff_ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
            staff_ctx.set_default_timeout(TIMEOUT_MS)
            staff = staff_ctx.new_page()
            _sign_in(staff, server, "pharmacy.staff", "staff-demo-1")
            expect(staff).to_have_url(f"{server}/pharmacy/orders")
            staff.click(f"#order-work tr[data-order='{order_id}'] a")
            staff.click("#order-dispense button")
            expect(staff.locator("#order-lines [data-lots]")).to_contain_text("D")  # the demo lot used
            for step in ("packed", "with_courier"):
                staff.click(f"#order-step-{step}")
            shot(staff, "staff-order-zh")
            staff.click("#order-step-delivered")
            expect(staff.locator("h1 [data-order-status]")).to_have_attribute(
                "data-order-status", "delivered"
            )
            staff_ctx.close()
            patient.goto(f"{server}/patient/orders/{order_id}")
            timeline = patient.locator("#order-timeline li")
            expect(timeline).to_have_count(6)
            expect(timeline.last).to_have_attribute("data-event", "delivered")
            shot(patient, "patient-order-delivered-en")
            patient.click(".mainnav >> text=My consultations")
            expect(patient.locator(f"tr[data-consultation='{consultation_id}'] .badge")).to_have_text(
                "Completed"
            )
            shot(patient, "patient-consultations-en")

            # --- signing out revokes the session ----------------------------------------------------
            patient.click("form[action='/logout'] button")
            expect(patient.locator(".flash.ok")).to_have_text("You have signed out.")
            patient.goto(f"{server}/consultations/{consultation_id}")
            expect(patient).to_have_url(re.compile(r"/login\?next="))
        finally:
            browser.close()


def test_admin_verifies_a_waiting_doctor_in_the_browser(server: str, output_dir: Path) -> None:
    """The unverified doctor sees why the queue is empty; the administrator verifies them."""
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    shot = _shooter(output_dir, "admin")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            waiting = browser.new_context(locale="zh-CN", viewport=VIEWPORT).new_page()
            _sign_in(waiting, server, "dr.new", "doctor-demo-1")
            expect(waiting.locator("#unverified")).to_contain_text("等待管理员审核")
            expect(waiting.locator("#queue")).to_have_count(0)
            shot(waiting, "unverified-doctor-zh")

            admin = browser.new_context(locale="en-GB", viewport=VIEWPORT).new_page()
            _sign_in(admin, server, "admin", "admin-demo-1")
            expect(admin).to_have_url(f"{server}/admin")
            expect(admin.locator("h1")).to_have_text("Doctor verification")
            pending = admin.locator("#pending tr", has_text="Zhao Xin")
            expect(pending).to_have_count(1)
            shot(admin, "admin-doctors-en")
            pending.locator("button[type=submit]").click()
            expect(admin.locator(".flash.ok")).to_have_text("The doctor was verified.")
            expect(admin.locator("#verified")).to_contain_text("Zhao Xin")

            admin.click(".mainnav >> text=Centres & clinics")
            expect(admin.locator("h1")).to_have_text("Centres and clinics")
            admin.select_option("#centre-organisation_id", label="Huaxia Internet Hospital")
            admin.fill("#centre-code", "Sleep Centre")  # not a valid code
            admin.fill("#centre-name_zh", "睡眠医学中心")
            admin.fill("#centre-name_en", "Sleep Medicine Centre")
            admin.evaluate("document.querySelector('#centre-code').removeAttribute('pattern')")
            admin.click("#add-centre button[type=submit]")
            expect(admin.locator("#add-centre .field-error")).to_contain_text("lower-case letters")
            admin.fill("#centre-code", "sleep")
            admin.click("#add-centre button[type=submit]")
            expect(admin.locator(".flash.ok")).to_have_text("The centre was added.")
            admin.click("a[data-lang=zh]")
            expect(admin.locator("#centres")).to_contain_text("睡眠医学中心")
            shot(admin, "admin-centres-zh")

            waiting.reload()
            expect(waiting.locator("#unverified")).to_have_count(0)
            expect(waiting.locator(".empty")).to_contain_text("目前没有等待接诊的问诊")
        finally:
            browser.close()
