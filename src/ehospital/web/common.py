"""What every page shares: who is signed in (cookie session), the language, CSRF, rendering."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction
from starlette.datastructures import FormData

from ehospital.auth.models import Role
from ehospital.auth.service import SESSION_COOKIE, AuthService
from ehospital.deps import Runtime, RuntimeDep, SessionDep, client_address, request_id
from ehospital.kit.context import Actor
from ehospital.kit.errors import Forbidden, Unauthenticated
from ehospital.web.i18n import LANG_NAMES, LANGS, Translator, has, negotiate

LANG_COOKIE = "lang"
# Before sign-in there is no session to bind the form token to: a random value in its own
# cookie plays that part (double-submit), so a foreign site cannot sign a victim in.
PRELOGIN_COOKIE = "ehospital_prelogin"
CSRF_FIELD = "csrf"
# The pages whose forms are posted before sign-in, so carry a token bound to the pre-login cookie.
PRELOGIN_FORMS = ("login.html", "register.html")
MAX_FORM_FILES = 12
MAX_FORM_FIELDS = 64
TEMPLATE_DIR = Path(__file__).parent / "templates"
# Mainland China has one time zone and no daylight saving; pages show times there.
CHINA_TIME = timezone(timedelta(hours=8), "CST")

ROLE_HOME = {
    Role.PATIENT: "/patient",
    Role.DOCTOR: "/doctor",
    Role.ADMIN: "/admin",
    Role.PHARMACIST: "/pharmacy",
    Role.PHARMACY_STAFF: "/pharmacy/orders",
    Role.CENTRE_MANAGER: "/manage/quality",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def csrf_for(secret: str) -> str:
    """The form token bound to a session (or pre-login) secret; the secret itself never leaves the cookie."""
    return hmac.new(secret.encode(), b"ehospital-csrf:v1", hashlib.sha256).hexdigest()


def home_of(actor: Actor | None) -> str:
    if actor is None:
        return "/login"
    return ROLE_HOME.get(actor.role, "/account")


def safe_next(value: str | None) -> str | None:
    """A local path to go back to after sign-in; anything else (other hosts, schemes) is dropped."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    if any(ord(ch) < 32 for ch in value):
        return None
    return value


def format_dt(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def format_money(cents: int | None) -> str:
    return "" if cents is None else f"¥{cents / 100:.2f}"


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["dt"] = format_dt
_env.filters["money"] = format_money


@dataclass
class Web:
    """The request as pages see it: session, runtime, the signed-in actor and the language."""

    request: Request
    session: AsyncSession
    runtime: Runtime
    actor: Actor | None
    token: str | None
    lang: str
    lang_chosen: bool
    prelogin: str | None = None
    new_prelogin: bool = False
    cookies_to_delete: list[str] = field(default_factory=list)

    @property
    def t(self) -> Translator:
        return Translator(self.lang)

    @property
    def me(self) -> Actor:
        """The actor of a page that requires sign-in."""
        if self.actor is None:
            raise Unauthenticated("sign in first", code="not_authenticated")
        return self.actor

    @property
    def csrf(self) -> str:
        if self.token is not None:
            return csrf_for(self.token)
        if self.prelogin is None:
            self.prelogin = secrets.token_urlsafe(24)
            self.new_prelogin = True
        return csrf_for(self.prelogin)

    def check_csrf(self, submitted: object) -> None:
        expected = None
        if self.token is not None:
            expected = csrf_for(self.token)
        elif self.prelogin is not None and not self.new_prelogin:
            expected = csrf_for(self.prelogin)
        if expected is None or not isinstance(submitted, str) or not hmac.compare_digest(expected, submitted):
            raise Forbidden("the form has expired or did not come from this site", code="csrf_failed")

    def atomic(self) -> AsyncSessionTransaction:
        """A savepoint around service calls: if one refuses, its writes are undone and the request
        (which still renders a page and commits) keeps only what came before."""
        return self.session.begin_nested()

    def switch_url(self, lang: str, here: str | None = None) -> str:
        """This page (or `here`) in another language."""
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k not in ("lang", "notice")]
        params.append(("lang", lang))
        return (here or self.request.url.path) + "?" + urlencode(params)

    def render(
        self, template: str, *, status_code: int = 200, here: str | None = None, **context: Any
    ) -> Response:
        t = self.t
        notice_key = f"notice.{self.request.query_params.get('notice', '')}"
        notice = t(notice_key) if has(notice_key, self.lang) else None
        values: dict[str, Any] = {
            "t": t,
            "lang": self.lang,
            "langs": [(code, LANG_NAMES[code], self.switch_url(code, here)) for code in LANGS],
            "actor": self.actor,
            "home": home_of(self.actor),
            "csrf": self.csrf if (self.actor is not None or template in PRELOGIN_FORMS) else "",
            "here": here or self.request.url.path,
            "notice": notice,
            "nav": nav_for(self.actor),
            "role_label": t.label("role", self.actor.role) if self.actor else "",
            **context,
        }
        html = _env.get_template(template).render(values)
        return self.finish(HTMLResponse(html, status_code=status_code))

    def redirect(self, url: str) -> Response:
        return self.finish(RedirectResponse(url, status_code=303))

    def finish(self, response: Response) -> Response:
        """Cookies and headers every page response carries."""
        secure = self.runtime.settings.cookie_secure
        if self.lang_chosen:
            response.set_cookie(
                LANG_COOKIE, self.lang, max_age=365 * 24 * 3600, path="/", samesite="lax", secure=secure
            )
        if self.new_prelogin and self.prelogin is not None:
            response.set_cookie(
                PRELOGIN_COOKIE, self.prelogin, path="/", httponly=True, samesite="lax", secure=secure
            )
        for name in dict.fromkeys(self.cookies_to_delete):
            response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=secure)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        response.headers.setdefault("Cache-Control", "private, no-store")
        return response


def nav_for(actor: Actor | None) -> list[tuple[str, str]]:
    """(path, catalog key) of the header links for a role."""
    if actor is None:
        return []
    if actor.role is Role.PATIENT:
        return [
            ("/patient", "nav.family"),
            ("/patient/consultations", "nav.my_consultations"),
            ("/patient/consultations/new", "nav.new_consultation"),
            ("/patient/prescriptions", "nav.my_prescriptions"),
            ("/glucose", "nav.glucose"),
            ("/skin", "nav.skin"),
        ]
    if actor.role is Role.DOCTOR:
        return [
            ("/doctor", "nav.queue"),
            ("/doctor/consultations", "nav.my_consultations"),
            ("/doctor/glucose", "nav.glucose_dashboard"),
        ]
    if actor.role is Role.ADMIN:
        return [
            ("/admin", "nav.doctors"),
            ("/admin/centres", "nav.centres"),
            ("/manage/quality", "nav.quality"),
        ]
    if actor.role is Role.PHARMACIST:
        return [("/pharmacy", "nav.review_queue"), ("/pharmacy/orders", "nav.orders")]
    if actor.role is Role.PHARMACY_STAFF:
        return [("/pharmacy/orders", "nav.orders")]
    if actor.role is Role.CENTRE_MANAGER:
        return [("/manage/quality", "nav.quality"), ("/account", "nav.account")]
    return [("/account", "nav.account")]


def render_template(template: str, **context: Any) -> str:
    """Render outside a page context (the error page when the request never reached a page)."""
    return _env.get_template(template).render(context)


async def get_web(request: Request, session: SessionDep, runtime: RuntimeDep) -> Web:
    """Resolve the cookie session and the language once per request."""
    token = request.cookies.get(SESSION_COOKIE) or None
    actor = None
    if token is not None and len(token) <= 256:
        actor = await AuthService(session, runtime.settings).authenticate(
            token, address=client_address(request), request_id=request_id(request), kind="session"
        )
    # deps.get_session audits refused requests of the signed-in caller it finds here.
    request.state.actor = actor
    lang, chosen = negotiate(
        query=request.query_params.get("lang"),
        cookie=request.cookies.get(LANG_COOKIE),
        account_locale=actor.locale if actor else None,
        accept_language=request.headers.get("accept-language"),
    )
    web = Web(
        request=request,
        session=session,
        runtime=runtime,
        actor=actor,
        token=token if actor is not None else None,
        lang=lang,
        lang_chosen=chosen,
        prelogin=request.cookies.get(PRELOGIN_COOKIE) or None,
    )
    if token is not None and actor is None:
        web.cookies_to_delete.append(SESSION_COOKIE)  # expired or revoked: forget it
    request.state.web = web
    return web


WebDep = Annotated[Web, Depends(get_web)]


async def signed_in(web: WebDep) -> Web:
    """Pages behind sign-in; the error page turns this 401 into a redirect to /login?next=…"""
    if web.actor is None:
        raise Unauthenticated("sign in first", code="not_authenticated")
    return web


SignedInWeb = Annotated[Web, Depends(signed_in)]


def _role(*roles: Role) -> Callable[[Web], Awaitable[Web]]:
    async def check(web: SignedInWeb) -> Web:
        if web.me.role not in roles:
            raise Forbidden("this page is for another role", code="wrong_role")
        return web

    return check


PatientWeb = Annotated[Web, Depends(_role(Role.PATIENT))]
DoctorWeb = Annotated[Web, Depends(_role(Role.DOCTOR))]
AdminWeb = Annotated[Web, Depends(_role(Role.ADMIN))]
PharmacistWeb = Annotated[Web, Depends(_role(Role.PHARMACIST))]
# Dispensing and delivery: the pharmacy's staff and its pharmacists.
PharmacyWeb = Annotated[Web, Depends(_role(Role.PHARMACY_STAFF, Role.PHARMACIST))]
CareWeb = Annotated[Web, Depends(_role(Role.PATIENT, Role.DOCTOR))]
# The quality dashboard: a centre's manager (their centre) and administrators (every centre).
QualityWeb = Annotated[Web, Depends(_role(Role.CENTRE_MANAGER, Role.ADMIN))]


async def checked_form(request: Request, web: WebDep) -> AsyncIterator[FormData]:
    """The posted form (urlencoded or multipart) once its CSRF token is verified; 403 otherwise."""
    async with request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS) as form:
        web.check_csrf(form.get(CSRF_FIELD))
        yield form


PostedForm = Annotated[FormData, Depends(checked_form)]
