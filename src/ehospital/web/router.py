"""Server-rendered pages (placeholder until the web UI lands)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).parent / "static"


def is_web_request(request: Request) -> bool:
    path = request.url.path
    return not (path.startswith("/api/") or path in ("/healthz", "/docs", "/openapi.json"))


async def render_error_page(request: Request, status: int, code: str, message: str) -> Response:
    return HTMLResponse(f"<h1>{status}</h1><p>{code}: {message}</p>", status_code=status)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
