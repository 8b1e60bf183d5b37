"""What the browser tests share: Debian's Chromium, its flags, and skipping (or failing in CI)
where it is missing."""

from __future__ import annotations

from pathlib import Path

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
