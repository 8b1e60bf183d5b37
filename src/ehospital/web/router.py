"""Server-rendered pages: the router main.py includes, its error page and its static files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ehospital.web.common import SECURITY_HEADERS, Web, home_of, render_template, safe_next
from ehospital.web.forms import domain_message
from ehospital.web.i18n import LANG_NAMES, LANGS, Translator, has, negotiate
from ehospital.web.pages import (
    account,
    admin,
    consultation,
    doctor,
    glucose,
    orders,
    patient,
    prescription,
    quality,
    skin,
)

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)
for _pages in (account, patient, consultation, doctor, admin, prescription, orders, glucose, skin, quality):
    router.include_router(_pages.router, include_in_schema=False)

_NOT_WEB = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz")


def is_web_request(request: Request) -> bool:
    """Whether errors on this path are answered with an HTML page (else the API's JSON)."""
    path = request.url.path
    return not (
        path.startswith(_NOT_WEB[0])
        or path in _NOT_WEB[1:]
        or path.startswith(("/docs/", "/cds-services"))  # CDS Hooks: a JSON API too
    )


def _login_redirect(request: Request, web: Web | None) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = "/login?" + urlencode({"next": here}) if request.method in ("GET", "HEAD") else "/login"
    response = RedirectResponse(target, status_code=303)
    return web.finish(response) if web is not None else response


async def render_error_page(request: Request, status: int, code: str, message: str) -> Response:
    """A friendly, localised error page; sign-in problems become a redirect to /login?next=…"""
    web: Web | None = getattr(request.state, "web", None)
    if request.url.path.endswith(".json"):  # the chat poller wants JSON, not a page
        return JSONResponse(
            {"error": {"code": code, "message": message}},
            status_code=status,
            headers={"Cache-Control": "no-store"},
        )
    if status == 401:
        return _login_redirect(request, web)
    title_key = f"errorpage.title.{status}"
    if web is not None:
        t = web.t
        title = t(title_key) if has(title_key, t.lang) else t("errorpage.title.other")
        return web.render(
            "error.html",
            # After a refused POST there is no page at this address to switch the language of.
            here=None if request.method in ("GET", "HEAD") else home_of(web.actor),
            status_code=status,
            status=status,
            title=title,
            code=code,
            message=domain_message(t, code, message),
        )
    lang, _ = negotiate(
        query=request.query_params.get("lang"),
        cookie=request.cookies.get("lang"),
        account_locale=None,
        accept_language=request.headers.get("accept-language"),
    )
    t = Translator(lang)
    here = safe_next(request.url.path) or "/"
    html = render_template(
        "error.html",
        t=t,
        lang=lang,
        # The path goes through safe_next: "//evil.example/x" must not become an off-site link.
        langs=[(c, LANG_NAMES[c], f"{here}?{urlencode({'lang': c})}") for c in LANGS],
        actor=None,
        home="/",
        csrf="",
        here=here,
        notice=None,
        nav=[],
        role_label="",
        status=status,
        title=t(title_key) if has(title_key, t.lang) else t("errorpage.title.other"),
        code=code,
        message=domain_message(t, code, message),
    )
    response = Response(html, status_code=status, media_type="text/html; charset=utf-8")
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
