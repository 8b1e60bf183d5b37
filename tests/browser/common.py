"""What the browser tests share: Debian's Chromium, its flags, and skipping (or failing in CI)
where it is missing."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.live import IN_CI

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:
    from playwright.sync_api import Page


def unavailable(reason: str) -> None:
    """No browser here: skip on a workstation, fail in CI (where it must be installed)."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def need_browser() -> None:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:  # pragma: no cover - the dev extra installs it
        unavailable("the playwright package is not installed")


def screenshot_dir(prefix: str) -> Path:
    """$EHOSPITAL_TEST_OUTPUT (default test-output/browser), emptied of this test's `prefix-*` files
    only: the other browser tests write there too."""
    folder = Path(os.environ.get("EHOSPITAL_TEST_OUTPUT") or REPO / "test-output" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{prefix}-*"):
        old.unlink()
    return folder


def shooter(folder: Path, prefix: str) -> Callable[[Page, str], Path]:
    """A function that takes a full-page screenshot named prefix-NN-name.png, numbered in order."""
    steps = iter(range(1, 100))

    def shot(page: Page, name: str) -> Path:
        path = folder / f"{prefix}-{next(steps):02d}-{name}.png"
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot


def api_client(base: str, username: str, password: str) -> httpx.Client:
    """An httpx client of the running server, signed in with a bearer token."""
    client = httpx.Client(base_url=base, timeout=60)
    token = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert token.status_code == 200, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def sign_in(page: Page, server: str, username: str, password: str, target: str) -> None:
    """Open `target`, expect the login page, sign in and expect to land back on `target`."""
    from playwright.sync_api import expect

    page.goto(f"{server}{target}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(target)))


def watch_console(page: Page, errors: list[str]) -> None:
    """Collect script errors and CSP violations. Refused requests (422) and the browser's own
    /favicon.ico request log "Failed to load resource" lines: those are expected."""

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
