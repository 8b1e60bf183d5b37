"""The server-rendered pages: sign-in, language, CSRF, the patient's, doctor's and admin's pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.models import AuditEvent
from ehospital.auth.models import Account, Role
from ehospital.consultations.models import Attachment, Status
from ehospital.directory.models import DoctorTitle
from ehospital.patients.models import Relationship
from ehospital.web import i18n
from tests.personas import PASSWORD, World, open_consultation, png_bytes

CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
WEB_DIR = Path(__file__).resolve().parents[1] / "src" / "ehospital" / "web"


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the CSRF token of the signed-in pages."""
    client.cookies.clear()
    page = await client.get("/login")
    response = await client.post(
        "/login", data={"csrf": csrf_of(page), "username": username, "password": password, "next": ""}
    )
    assert response.status_code == 303, response.text
    home = await client.get(response.headers["location"])
    assert home.status_code == 200, home.text
    return csrf_of(home)


async def open_via_form(
    client: httpx.AsyncClient, csrf: str, world: World, *, visit_type: str = "follow_up"
) -> httpx.Response:
    return await client.post(
        "/patient/consultations/new",
        data={
            "csrf": csrf,
            "patient_id": str(world.alice.family[0].id),
            "centre_id": str(world.diabetes.id),
            "clinic_id": "",
            "doctor_id": "",
            "visit_type": visit_type,
            "complaint": "fasting glucose around 9 for two weeks",
            "prior_diagnosis": "Type 2 diabetes",
            "prior_institution": "",
        },
        files=[("evidence", ("report.png", png_bytes(), "image/png"))],
    )


# --- catalogs -------------------------------------------------------------------------------


def test_catalogs_have_the_same_keys_and_cover_every_template_key() -> None:
    zh, en = i18n.CATALOGS["zh"], i18n.CATALOGS["en"]
    assert set(zh) == set(en)
    used: set[str] = set()
    for path in [
        *(WEB_DIR / "templates").glob("*.html"),
        *(WEB_DIR / "pages").glob("*.py"),
        WEB_DIR / "common.py",
    ]:
        used |= set(re.findall(r"\bt\(['\"]([a-z0-9_.]+)['\"]", path.read_text(encoding="utf-8")))
    assert {k for k in used if not k.endswith(".")} - set(zh) == set()
    # Keys built at run time: one per value of the enums the pages show.
    dynamic = [f"{kind}.{s}" for kind in ("status", "status_hint", "status_hint.doctor") for s in Status]
    dynamic += [f"role.{r}" for r in Role] + [f"relationship.{r}" for r in Relationship]
    dynamic += [f"title.{d}" for d in DoctorTitle] + ["sex.male", "sex.female"]
    assert set(dynamic) - set(zh) == set()
    for value in json.loads((WEB_DIR / "i18n" / "zh.json").read_text(encoding="utf-8")).values():
        assert value.strip()


def test_language_negotiation_order() -> None:
    assert i18n.negotiate(query="en", cookie="zh", account_locale="zh", accept_language=None) == ("en", True)
    assert i18n.negotiate(query=None, cookie="en", account_locale="zh", accept_language=None) == ("en", False)
    assert i18n.negotiate(query=None, cookie=None, account_locale="en", accept_language="zh") == ("en", False)
    assert (
        i18n.negotiate(query="xx", cookie=None, account_locale=None, accept_language="fr, en;q=0.5")[0]
        == "en"
    )
    assert (
        i18n.negotiate(query=None, cookie=None, account_locale=None, accept_language="en;q=0, zh-CN")[0]
        == "zh"
    )
    assert i18n.negotiate(query=None, cookie=None, account_locale=None, accept_language=None)[0] == "zh"


# --- sign-in, language, CSRF ----------------------------------------------------------------


async def test_login_page_in_both_languages_and_the_lang_cookie(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text and "登录" in page.text
    assert "private, no-store" in page.headers["cache-control"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    english = await client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.text and "Sign in" in english.text
    switched = await client.get("/login?lang=en")
    assert "lang=en" in switched.headers["set-cookie"]
    again = await client.get("/login")  # the cookie now wins over the default
    assert '<html lang="en">' in again.text


async def test_pages_need_sign_in_and_redirect_back(client: httpx.AsyncClient) -> None:
    response = await client.get("/patient/consultations?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fpatient%2Fconsultations%3Fx%3D1"
    assert (await client.get("/")).headers["location"] == "/login"
    poll = await client.get("/consultations/1/messages.json")
    assert poll.status_code == 401 and poll.json()["error"]["code"] == "not_authenticated"


async def test_failed_sign_in_shows_the_message_and_is_counted(
    client: httpx.AsyncClient, world: World
) -> None:
    page = await client.get("/login")
    token = csrf_of(page)
    for _ in range(5):
        wrong = await client.post("/login", data={"csrf": token, "username": "alice", "password": "nope"})
        assert wrong.status_code == 401
        assert "用户名或密码错误" in wrong.text and "invalid_credentials" in wrong.text
        assert 'value="alice"' in wrong.text and "nope" not in wrong.text
    throttled = await client.post("/login", data={"csrf": token, "username": "alice", "password": PASSWORD})
    assert throttled.status_code == 429 and "too_many_login_attempts" in throttled.text


async def test_posts_without_the_csrf_token_are_refused(client: httpx.AsyncClient, world: World) -> None:
    refused = await client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403 and "csrf_failed" in refused.text
    await sign_in(client, "alice")
    forged = await client.post("/patient/family", data={"csrf": "0" * 64, "name": "X"})
    assert forged.status_code == 403 and "csrf_failed" in forged.text


async def test_sign_in_follows_next_and_sign_out_revokes(client: httpx.AsyncClient, world: World) -> None:
    page = await client.get("/login?next=/patient/consultations")
    assert 'name="next" value="/patient/consultations"' in page.text
    response = await client.post(
        "/login",
        data={
            "csrf": csrf_of(page),
            "username": "alice",
            "password": PASSWORD,
            "next": "/patient/consultations",
        },
    )
    assert response.headers["location"] == "/patient/consultations"
    cookie = response.headers["set-cookie"]
    assert "ehospital_session=ehs_" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    evil = await client.get("/login?next=//evil.example/")
    assert evil.headers["location"] == "/patient"  # signed in: go home, never off-site
    home = await client.get("/patient")
    session_token = client.cookies["ehospital_session"]
    out = await client.post("/logout", data={"csrf": csrf_of(home)})
    assert out.status_code == 303 and out.headers["location"] == "/login?notice=signed_out"
    client.cookies.set("ehospital_session", session_token)  # replaying the old cookie gets nowhere
    assert (await client.get("/patient")).status_code == 303


# --- patients -------------------------------------------------------------------------------


async def test_family_page_masks_ids_and_validates_the_new_member(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await sign_in(client, "alice")
    home = await client.get("/patient")
    number = world.alice.family[0].id_number
    assert number not in home.text and number[:3] in home.text and "Sam" in home.text
    bad = await client.post(
        "/patient/family",
        data={
            "csrf": csrf,
            "name": "",
            "id_number": "123",
            "sex": "x",
            "birth_date": "soon",
            "relationship": "self",
        },
    )
    assert bad.status_code == 422
    assert "此项为必填项" in bad.text and "请输入有效的日期" in bad.text
    checksum = await client.post(
        "/patient/family",
        data={
            "csrf": csrf,
            "name": "Grandpa",
            "id_number": "11010519520101001X",
            "sex": "male",
            "birth_date": "1952-01-01",
            "relationship": "grandparent",
        },
    )
    assert checksum.status_code == 422 and "invalid_id_number" in checksum.text
    assert 'value="Grandpa"' in checksum.text


async def test_first_visit_is_refused_and_follow_up_opens(client: httpx.AsyncClient, world: World) -> None:
    csrf = await sign_in(client, "alice")
    form = await client.get(f"/patient/consultations/new?patient={world.alice.family[0].id}")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
    first = await open_via_form(client, csrf, world, visit_type="first")
    assert first.status_code == 422
    assert "first_visit_not_allowed" in first.text and "初诊请到医院线下就诊" in first.text
    assert (await client.get("/patient/consultations")).text.count("data-consultation=") == 0
    opened = await open_via_form(client, csrf, world)
    assert opened.status_code == 303, opened.text
    page = await client.get(opened.headers["location"])
    assert "等待接诊" in page.text and "问诊已提交" in page.text
    # The place in the queue and the centre's first-answer promise.
    assert 'id="wait"' in page.text and "您目前排在第 1 位" in page.text and "前首次回复" in page.text
    image = re.search(r'<img src="(/files/\d+)"', page.text)
    assert image
    file = await client.get(image.group(1))
    assert file.status_code == 200 and file.headers["content-type"] == "image/png"
    assert file.headers["cache-control"] == "private, no-store"


async def test_a_refused_consultation_leaves_no_uploads_behind(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    csrf = await sign_in(client, "alice")
    count = select(func.count()).select_from(Attachment)
    before = (await session.execute(count)).scalar_one()
    refused = await open_via_form(client, csrf, world, visit_type="first")
    assert refused.status_code == 422
    assert (await session.execute(count)).scalar_one() == before
    no_files = await client.post(
        "/patient/consultations/new",
        data={
            "csrf": csrf,
            "patient_id": str(world.alice.family[0].id),
            "centre_id": str(world.diabetes.id),
            "visit_type": "follow_up",
            "complaint": "glucose high",
            "prior_diagnosis": "Type 2 diabetes",
        },
    )
    assert no_files.status_code == 422 and "evidence_required" in no_files.text
    huge = await client.post(
        "/patient/consultations/new",
        data={
            "csrf": csrf,
            "patient_id": "99999999999999999999",
            "centre_id": "x",
            "visit_type": "follow_up",
        },
    )
    assert huge.status_code == 422 and "请选择有效的选项" in huge.text


async def test_outsiders_see_nothing_of_a_consultation(client: httpx.AsyncClient, world: World) -> None:
    csrf = await sign_in(client, "alice")
    opened = await open_via_form(client, csrf, world)
    page = await client.get(opened.headers["location"])
    cid = opened.headers["location"].split("/")[2].split("?")[0]
    image = re.search(r'<img src="(/files/\d+)"', page.text)
    assert image
    for outsider in ("bob", "dr.dia2", "dr.skin"):
        csrf = await sign_in(client, outsider)
        assert (await client.get(f"/consultations/{cid}")).status_code == 404
        poll = await client.get(f"/consultations/{cid}/messages.json")
        assert poll.status_code == 404 and poll.json()["error"]["code"] == "consultation_not_found"
        assert (await client.get(image.group(1))).status_code == 404
        sent = await client.post(f"/consultations/{cid}/messages", data={"csrf": csrf, "body": "hi"})
        assert sent.status_code == 404


async def test_wrong_role_gets_a_localised_403_page(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, "alice")
    page = await client.get("/admin?lang=en")
    assert page.status_code == 403
    assert "This page is for another kind of account." in page.text and "wrong_role" in page.text
    missing = await client.get("/consultations/999999")
    assert missing.status_code == 404 and "consultation_not_found" in missing.text


# --- doctors --------------------------------------------------------------------------------


async def test_doctor_accepts_replies_diagnoses_and_completes(
    client: httpx.AsyncClient, world: World
) -> None:
    csrf = await sign_in(client, "alice")
    opened = await open_via_form(client, csrf, world)
    cid = int(opened.headers["location"].split("/")[2].split("?")[0])
    await client.post(f"/consultations/{cid}/messages", data={"csrf": csrf, "body": "hello doctor"})

    csrf = await sign_in(client, "dr.dia")
    queue = await client.get("/doctor")
    assert f'data-consultation="{cid}"' in queue.text and "fasting glucose" in queue.text
    accepted = await client.post(f"/consultations/{cid}/accept", data={"csrf": csrf})
    assert accepted.status_code == 303
    page = await client.get(f"/consultations/{cid}")
    assert "hello doctor" in page.text and "已接诊" in page.text
    early = await client.post(f"/consultations/{cid}/complete", data={"csrf": csrf, "summary": "all good"})
    assert early.status_code == 422 and "diagnosis_required" in early.text
    bad_code = await client.post(
        f"/consultations/{cid}/diagnosis", data={"csrf": csrf, "code": "11", "text": "x"}
    )
    assert bad_code.status_code == 422 and "E11.9" in bad_code.text
    reply = await client.post(
        f"/consultations/{cid}/messages",
        data={"csrf": csrf, "body": "please add a photo"},
        files={"image": ("photo.png", png_bytes(), "image/png")},
    )
    assert reply.status_code == 303
    dx = await client.post(
        f"/consultations/{cid}/diagnosis", data={"csrf": csrf, "code": "e11.9", "text": "Type 2 diabetes"}
    )
    assert dx.status_code == 303
    done = await client.post(
        f"/consultations/{cid}/complete", data={"csrf": csrf, "summary": "keep metformin"}
    )
    assert done.status_code == 303
    poll = await client.get(f"/consultations/{cid}/messages.json?after_seq=1")
    lines = poll.json()["messages"]
    assert poll.json()["changed"] is True and all(m["seq"] > 1 for m in lines)
    assert any(m["image_url"] for m in lines) and any("E11.9" in m["body"] for m in lines)

    await sign_in(client, "alice")
    final = await client.get(f"/consultations/{cid}?lang=en")
    assert "Completed" in final.text and "please add a photo" in final.text and "keep metformin" in final.text


async def test_unverified_doctor_sees_the_notice(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, "dr.new")
    page = await client.get("/doctor")
    assert 'id="unverified"' in page.text and "等待管理员审核" in page.text


# --- admin ----------------------------------------------------------------------------------


async def test_admin_verifies_doctors_and_manages_centres(client: httpx.AsyncClient, world: World) -> None:
    csrf = await sign_in(client, "admin.a")
    page = await client.get("/admin")
    assert world.dr_new.doctor is not None
    assert f'data-doctor="{world.dr_new.doctor_id}"' in page.text
    verified = await client.post(
        f"/admin/doctors/{world.dr_new.doctor_id}/verify", data={"csrf": csrf, "verified": "true"}
    )
    assert verified.headers["location"] == "/admin?notice=doctor_verified"
    bad = await client.post(
        "/admin/centres",
        data={
            "csrf": csrf,
            "organisation_id": str(world.hospital.id),
            "code": "Bad Code",
            "name_zh": "",
            "name_en": "x",
        },
    )
    assert bad.status_code == 422 and "只能使用小写字母" in bad.text
    created = await client.post(
        "/admin/centres",
        data={
            "csrf": csrf,
            "organisation_id": str(world.hospital.id),
            "code": "t-sleep",
            "name_zh": "睡眠中心",
            "name_en": "Sleep Centre",
            "description_zh": "",
            "description_en": "",
        },
    )
    assert created.status_code == 303
    duplicate = await client.post(
        f"/admin/centres/{world.diabetes.id}/clinics",
        data={"csrf": csrf, "code": "t2d", "name_zh": "2型", "name_en": "Type 2"},
    )
    assert duplicate.status_code == 409 and "duplicate_code" in duplicate.text
    off = await client.post(
        f"/admin/clinics/{world.t2d.id}/active", data={"csrf": csrf, "is_active": "false"}
    )
    assert off.status_code == 303
    centres = await client.get("/admin/centres")
    assert "睡眠中心" in centres.text
    # The centre's response-time promises.
    assert f'data-promises="{world.diabetes.id}"' in centres.text and "首次回复时限" in centres.text
    promises = f"/admin/centres/{world.diabetes.id}/promises"
    saved = await client.post(
        promises, data={"csrf": csrf, "first_response_minutes": "15", "close_within_hours": "48"}
    )
    assert saved.status_code == 303
    read = (await client.get(f"/api/v1/centres/{world.diabetes.id}")).json()
    assert (read["first_response_minutes"], read["close_within_hours"]) == (15, 48)
    refused = await client.post(
        promises, data={"csrf": csrf, "first_response_minutes": "0", "close_within_hours": "48"}
    )
    assert refused.status_code == 422 and 'aria-invalid="true"' in refused.text
    read = (await client.get(f"/api/v1/centres/{world.diabetes.id}")).json()
    assert read["first_response_minutes"] == 15


async def test_web_routes_are_not_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    api = ("/api/", "/cds-services")  # CDS Hooks fixes its own paths
    assert not [p for p in paths if not p.startswith(api) and p != "/healthz"]


async def test_unknown_pages_get_the_friendly_404(client: httpx.AsyncClient) -> None:
    page = await client.get("/nowhere", headers={"Accept-Language": "en"})
    assert page.status_code == 404 and "Not found" in page.text and 'href="/static/app.css"' in page.text


@pytest.mark.parametrize("path", ["/static/app.css", "/static/app.js", "/static/chat.js"])
async def test_static_files_are_served(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def test_off_site_paths_do_not_become_links(client: httpx.AsyncClient) -> None:
    r = await client.get(httpx.URL("https://testserver//evil.example/x"))
    assert r.status_code == 404
    assert "//evil.example" not in r.text


async def test_refused_web_requests_are_audited(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    consultation = await open_consultation(client, world)
    await sign_in(client, "bob")
    assert (await client.get(f"/consultations/{consultation['id']}")).status_code == 404
    denied = (
        await session.scalars(
            select(AuditEvent).where(
                AuditEvent.actor_id == world.bob.account.id, AuditEvent.action == "denied"
            )
        )
    ).all()
    assert [e.resource_id for e in denied] == [f"GET /consultations/{consultation['id']}"]


# --- patient sign-up ------------------------------------------------------------------------

NEWCOMER = {
    "username": "newcomer",
    "display_name": "New Comer",
    "phone": "",
    "password": "a-good-password",
    "password2": "a-good-password",
}


async def count_accounts(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(Account))).scalar_one()


async def test_sign_in_links_to_sign_up_and_back(client: httpx.AsyncClient) -> None:
    login = await client.get("/login")
    assert 'href="/register"' in login.text and "注册新账户" in login.text
    page = await client.get("/register?lang=en")
    assert page.status_code == 200 and "private, no-store" in page.headers["cache-control"]
    assert "Create an account" in page.text and "Already have an account?" in page.text
    assert 'href="/login"' in page.text and 'id="doctors-note"' in page.text
    assert 'autocomplete="new-password"' in page.text and csrf_of(page)


async def test_patient_signs_up_and_lands_on_the_family_page(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    page = await client.get("/register", headers={"Accept-Language": "en"})
    before = await count_accounts(session)
    response = await client.post(
        "/register", data={**NEWCOMER, "csrf": csrf_of(page)}, headers={"Accept-Language": "en"}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/patient?notice=registered"
    cookie = response.headers["set-cookie"]
    assert "ehospital_session=ehs_" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert await count_accounts(session) == before + 1
    account = (await session.scalars(select(Account).where(Account.username == "newcomer"))).one()
    assert (account.role, account.display_name, account.phone, account.locale) == (
        "patient",
        "New Comer",
        None,
        "en",  # the page language
    )
    home = await client.get(response.headers["location"])  # no Accept-Language: the account's locale
    assert home.status_code == 200
    assert '<html lang="en">' in home.text and "Your account was created" in home.text
    assert "New Comer" in home.text and 'action="/patient/family"' in home.text
    assert (await client.get("/register")).headers["location"] == "/patient"
    client.cookies.clear()
    await sign_in(client, "newcomer", "a-good-password")


@pytest.mark.parametrize(
    ("change", "field", "message", "status"),
    [
        ({"password2": "another-password"}, "password2", "两次输入的密码不一致。", 422),
        ({"password": "short", "password2": "short"}, "password", "请至少输入 8 个字。", 422),
        ({"username": "new comer!"}, "username", "只能使用字母、数字和 . _ @ -。", 422),
        ({"username": "alice"}, "username", "该用户名已被占用。", 409),
    ],
)
async def test_refused_sign_up_re_renders_and_creates_nothing(
    client: httpx.AsyncClient,
    world: World,
    session: AsyncSession,
    change: dict[str, str],
    field: str,
    message: str,
    status: int,
) -> None:
    page = await client.get("/register")
    before = await count_accounts(session)
    refused = await client.post("/register", data={**NEWCOMER, **change, "csrf": csrf_of(page)})
    assert refused.status_code == status, refused.text
    assert message in refused.text and f'id="register-{field}-error"' in refused.text
    assert 'value="New Comer"' in refused.text and NEWCOMER["password"] not in refused.text
    assert "ehospital_session=ehs_" not in refused.headers.get("set-cookie", "")
    assert await count_accounts(session) == before


async def test_a_taken_username_is_refused_in_the_page_language(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    page = await client.get("/register?lang=en")
    before = await count_accounts(session)
    taken = await client.post("/register", data={**NEWCOMER, "username": "alice", "csrf": csrf_of(page)})
    assert taken.status_code == 409
    assert "This username is taken." in taken.text and "username_taken" in taken.text
    spaced = await client.post(
        "/register",
        data={
            **NEWCOMER,
            "password": " a-good-password",
            "password2": " a-good-password",
            "csrf": csrf_of(page),
        },
    )
    assert spaced.status_code == 422 and "cannot begin or end with a space" in spaced.text
    assert await count_accounts(session) == before


async def test_sign_up_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    before = await count_accounts(session)
    missing = await client.post("/register", data=NEWCOMER)
    assert missing.status_code == 403 and "csrf_failed" in missing.text
    await client.get("/register")  # the pre-login cookie is set, but the token must match it
    forged = await client.post("/register", data={**NEWCOMER, "csrf": "0" * 64})
    assert forged.status_code == 403 and "csrf_failed" in forged.text
    assert await count_accounts(session) == before
