"""Sign-in, sign-out, the role's home, and the account page of roles without pages of their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ehospital.auth.errors import LoginFailed, LoginThrottled
from ehospital.auth.models import Role
from ehospital.auth.service import AuthService
from ehospital.deps import client_address
from ehospital.web.common import (
    CSRF_FIELD,
    PRELOGIN_COOKIE,
    ROLE_HOME,
    SESSION_COOKIE,
    PostedForm,
    SignedInWeb,
    Web,
    WebDep,
    home_of,
    safe_next,
)
from ehospital.web.forms import EMPTY, FormState, failed, text

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
    # A stale session cookie was queued for deletion; the new one replaces it instead.
    web.cookies_to_delete = [c for c in web.cookies_to_delete if c != SESSION_COOKIE] + [PRELOGIN_COOKIE]
    role = Role(issued.account.role)
    response = web.redirect(next_path or ROLE_HOME.get(role, "/account"))
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
