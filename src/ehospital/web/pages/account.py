"""Sign-in, patient sign-up, sign-out, the role's home, and the account page of roles without
pages of their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import ValidationError

from ehospital.auth.errors import LoginFailed, LoginThrottled
from ehospital.auth.models import Role
from ehospital.auth.schemas import PatientAccountCreate
from ehospital.auth.service import SESSION_COOKIE, AuthService, IssuedToken, register_patient_account
from ehospital.deps import client_address
from ehospital.kit.errors import DomainError
from ehospital.web.common import (
    CSRF_FIELD,
    PRELOGIN_COOKIE,
    ROLE_HOME,
    PostedForm,
    SignedInWeb,
    Web,
    WebDep,
    home_of,
    safe_next,
)
from ehospital.web.forms import EMPTY, FormState, failed, field_error, invalid, optional, text, values_of

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index(web: WebDep) -> Response:
    """Send everyone to their role's home (or to sign in)."""
    return web.redirect(home_of(web.actor))


def _login_page(web: Web, state: FormState, next_path: str | None, status_code: int = 200) -> Response:
    return web.render("login.html", state=state, next=next_path or "", status_code=status_code)


@router.get("/login")
async def login_form(web: WebDep, next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    if web.actor is not None:
        return web.redirect(safe_next(next) or home_of(web.actor))
    return _login_page(web, EMPTY, safe_next(next))


@router.post("/login")
async def login(web: WebDep, form: PostedForm) -> Response:
    username = text(form, "username")
    raw_password = form.get("password")
    password = raw_password if isinstance(raw_password, str) else ""
    next_path = safe_next(text(form, "next"))
    values = {"username": username}
    if not username or not password:
        missing = {
            k: web.t("validation.required")
            for k, v in (("username", username), ("password", password))
            if not v
        }
        state = FormState("login", values, missing, web.t("validation.summary"), "validation_error")
        return _login_page(web, state, next_path, 422)
    try:
        issued = await AuthService(web.session, web.runtime.settings).login(
            username, password, address=client_address(web.request), kind="session"
        )
    except (LoginFailed, LoginThrottled) as exc:
        # Returning normally lets the request commit, so the failed attempt is counted.
        return _login_page(web, failed(web.t, "login", exc, values), next_path, exc.status_code)
    role = Role(issued.account.role)
    return _start_session(web, issued, next_path or ROLE_HOME.get(role, "/account"))


def _start_session(web: Web, issued: IssuedToken, target: str) -> Response:
    """Redirect to `target` with the new web session's cookie (the pre-login one is done with)."""
    # A stale session cookie was queued for deletion; the new one replaces it instead.
    web.cookies_to_delete = [c for c in web.cookies_to_delete if c != SESSION_COOKIE] + [PRELOGIN_COOKIE]
    response = web.redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        expires=issued.expires_at,
        path="/",
        httponly=True,
        samesite="lax",
        secure=web.runtime.settings.cookie_secure,
    )
    return response


REGISTER_FIELDS = ("username", "display_name", "phone")


def _register_page(web: Web, state: FormState, status_code: int = 200) -> Response:
    return web.render("register.html", state=state, status_code=status_code)


@router.get("/register")
async def register_form(web: WebDep) -> Response:
    """The patient sign-up form (doctors register through the API and wait for verification)."""
    if web.actor is not None:
        return web.redirect(home_of(web.actor))
    return _register_page(web, EMPTY)


@router.post("/register")
async def register(web: WebDep, form: PostedForm) -> Response:
    """Create a patient account in the page language, sign it in and go to the family page."""
    if web.actor is not None:  # a form left open in another tab: keep the open session
        return web.redirect(home_of(web.actor))
    values = values_of(form, *REGISTER_FIELDS)
    raw_password, raw_again = form.get("password"), form.get("password2")
    password = raw_password if isinstance(raw_password, str) else ""
    again = raw_again if isinstance(raw_again, str) else ""
    try:
        data = PatientAccountCreate.model_validate(
            {**values, "password": password, "phone": optional(form, "phone"), "locale": web.lang}
        )
    except ValidationError as exc:
        state = invalid(web.t, "register", exc, values)
        if password and again != password:
            state.fields.setdefault("password2", web.t("validation.password_mismatch"))
        return _register_page(web, state, 422)
    if password != password.strip():
        # The schema strips spaces while sign-in takes the password as typed: refuse the ambiguity.
        state = field_error(web.t, "register", "password", "validation.password_spaces", values)
        return _register_page(web, state, 422)
    if again != password:
        state = field_error(web.t, "register", "password2", "validation.password_mismatch", values)
        return _register_page(web, state, 422)
    try:
        async with web.atomic():
            account = await register_patient_account(
                web.session, data.username, data.password, data.display_name, data.phone, data.locale
            )
            issued = AuthService(web.session, web.runtime.settings).issue(
                account, kind="session", address=client_address(web.request)
            )
    except DomainError as exc:
        state = failed(web.t, "register", exc, values)
        if exc.code == "username_taken":
            state.fields["username"] = state.error or ""
        return _register_page(web, state, exc.status_code)
    return _start_session(web, issued, "/patient?notice=registered")


@router.post("/logout")
async def logout(web: WebDep) -> Response:
    """Revoke the session; a stale or missing session just clears the cookie."""
    if web.actor is not None:
        async with web.request.form(max_files=0, max_fields=8) as form:
            web.check_csrf(form.get(CSRF_FIELD))
        await AuthService(web.session, web.runtime.settings).logout(web.actor)
    web.cookies_to_delete.append(SESSION_COOKIE)
    return web.redirect("/login?notice=signed_out")


@router.get("/account")
async def account(web: SignedInWeb) -> Response:
    """Who is signed in; the home of roles whose workspace has no web pages yet."""
    return web.render("account.html", has_pages=web.me.role in ROLE_HOME)
