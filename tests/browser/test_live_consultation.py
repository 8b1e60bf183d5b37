"""A live consultation in two Chromium pages, against a real server: the patient types and the
doctor's page says so; the doctor's answer appears on the patient's page without a reload, and
the doctor sees it read; then the doctor starts a video call, the patient joins, and both
browsers reach WebRTC "connected" with fake cameras (the signalling goes over our WebSocket).
The call's start, end and duration are recorded in the consultation.

Screenshots land in $EHOSPITAL_TEST_OUTPUT (default test-output/browser), named live-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    need_browser,
    screenshot_dir,
    shooter,
    sign_in,
    watch_console,
)
from tests.chat_client import token_of
from tests.live import live_server
from tests.test_chat_live import open_consultation

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PREFIX = "live"
FAKE_MEDIA = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Both browsers are on this machine; CI machines may have no other interface than loopback.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@pytest.fixture(scope="module")
def output_dir() -> Path:
    return screenshot_dir(PREFIX)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_browser()
    with live_server(tmp_path_factory.mktemp("live-pages")) as base:
        yield base


@pytest.fixture(scope="module")
def world(server: str) -> dict[str, Any]:
    patient = token_of(server, "patient", "patient-demo-1")
    doctor = token_of(server, "dr.lin", "doctor-demo-1")
    return {"doctor": doctor, "cid": open_consultation(server, patient, doctor)}


def test_live_chat_and_a_video_call_in_two_browsers(
    server: str, world: dict[str, Any], output_dir: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    shot = shooter(output_dir, PREFIX)
    cid = world["cid"]
    page_url = f"/consultations/{cid}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + FAKE_MEDIA, headless=True
        )
        try:
            errors: list[str] = []
            pages = {}
            for who, user, lang in (("patient", "patient", "zh-CN"), ("doctor", "dr.lin", "zh-CN")):
                context = browser.new_context(locale=lang, viewport=DESKTOP)
                context.grant_permissions(["camera", "microphone"], origin=server)
                context.set_default_timeout(TIMEOUT_MS)
                page = context.new_page()
                watch_console(page, errors)
                password = "patient-demo-1" if who == "patient" else "doctor-demo-1"
                sign_in(page, server, user, password, page_url)
                pages[who] = page
            patient, doctor = pages["patient"], pages["doctor"]

            # --- live chat: typing, a new line without reload, read marks -----------------------
            expect(doctor.locator("#call-start")).to_be_visible()  # the video socket is up
            patient.fill("#msg-body", "医生，我想问一下")
            patient.locator("#msg-body").press("End")
            patient.locator("#msg-body").type("药")  # typing events are sent on input
            expect(doctor.locator("#chat-typing")).to_be_visible(timeout=10_000)
            shot(doctor, "doctor-sees-typing")
            doctor.fill("#msg-body", "请每晚外用一次，两周后复查。")
            doctor.click("#message-form button[type=submit]")
            expect(doctor.locator(".msg.mine").last).to_contain_text("请每晚外用一次")
            # The patient's page shows it without a reload (the socket said it was stored).
            patient_url_before = patient.url
            expect(patient.locator(".msg.theirs").last).to_contain_text("请每晚外用一次", timeout=10_000)
            assert patient.url == patient_url_before
            # The patient's page has it on screen: the doctor's page marks it read.
            expect(doctor.locator(".msg.mine.read").last).to_contain_text("请每晚外用一次", timeout=10_000)
            shot(patient, "patient-new-line")
            shot(doctor, "doctor-read-mark")

            # --- the video call -------------------------------------------------------------------
            doctor.click("#call-start")
            expect(doctor.locator("#call")).to_have_attribute("data-call-state", "calling")
            expect(patient.locator("#call")).to_have_attribute("data-call-state", "ringing")
            expect(patient.locator("#call-status")).to_contain_text("医生正在呼叫您")
            shot(patient, "patient-ringing")
            patient.click("#call-join")
            expect(patient.locator("#call")).to_have_attribute("data-call-state", "connected", timeout=30_000)
            expect(doctor.locator("#call")).to_have_attribute("data-call-state", "connected", timeout=30_000)
            # Media flows: the remote video has frames from the other side's fake camera.
            for page in (patient, doctor):
                page.wait_for_function(
                    "() => { const v = document.getElementById('call-remote'); return v && v.videoWidth > 0; }",
                    timeout=15_000,
                )
            shot(patient, "patient-connected")
            shot(doctor, "doctor-connected")
            patient.wait_for_timeout(1500)  # a call of a second or two
            doctor.click("#call-hangup")
            expect(doctor.locator("#call")).to_have_attribute("data-call-state", "ended")
            expect(patient.locator("#call")).to_have_attribute("data-call-state", "ended")
            expect(patient.locator(".msg.event").last).to_contain_text("视频通话结束", timeout=10_000)
            # The call's lines are no change of state: no "reload the page" note, no reload.
            expect(patient.locator("#chat-changed")).to_be_hidden()
            shot(patient, "patient-ended")
            assert errors == [], errors
        finally:
            browser.close()

    calls = httpx.get(
        f"{server}/api/v1/consultations/{cid}/calls", headers={"Authorization": f"Bearer {world['doctor']}"}
    ).json()
    assert len(calls) == 1
    call = calls[0]
    assert call["connected_at"] is not None and call["ended_at"] is not None
    assert call["end_reason"] == "hangup"
    assert call["duration_seconds"] >= 1
