"""Page translations: flat JSON catalogs (zh, en) loaded once, and the language negotiation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LANGS: tuple[str, ...] = ("zh", "en")
DEFAULT_LANG = "zh"
LANG_NAMES = {"zh": "中文", "en": "English"}
CATALOG_DIR = Path(__file__).parent / "i18n"


def _load(lang: str) -> dict[str, str]:
    data = json.loads((CATALOG_DIR / f"{lang}.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"i18n/{lang}.json must be a flat object of strings")
    return data


CATALOGS: dict[str, dict[str, str]] = {lang: _load(lang) for lang in LANGS}


def has(key: str, lang: str = DEFAULT_LANG) -> bool:
    return key in CATALOGS.get(lang, {})


def translate(lang: str, key: str, **params: Any) -> str:
    """The text for `key` in `lang` (falling back to Chinese, then the key), with {params} filled."""
    text = CATALOGS.get(lang, {}).get(key)
    if text is None:
        text = CATALOGS[DEFAULT_LANG].get(key, key)
    if params:
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            return text
    return text


class Translator:
    """`t(key, **params)` bound to one language; what templates call."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG

    def __call__(self, key: str, **params: Any) -> str:
        return translate(self.lang, key, **params)

    def label(self, prefix: str, value: object) -> str:
        """A catalogued label for an enum value (status, sex, role…), or the value itself."""
        key = f"{prefix}.{value}"
        return translate(self.lang, key) if has(key, self.lang) else str(value)


def pick(value: str | None) -> str | None:
    """The supported language a tag such as 'zh-CN' or 'en_GB' stands for."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGS else None


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an Accept-Language header (RFC 9110 q-values)."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        lang = pick(tag)
        if lang and quality > 0:
            ranked.append((-quality, index, lang))
    return min(ranked)[2] if ranked else None


def negotiate(
    *, query: str | None, cookie: str | None, account_locale: str | None, accept_language: str | None
) -> tuple[str, bool]:
    """The page language and whether it was chosen just now (?lang=), so the cookie is (re)set.

    Order: ?lang= > the lang cookie > the account's locale > Accept-Language > Chinese.
    """
    chosen = pick(query)
    if chosen:
        return chosen, True
    return (
        pick(cookie) or pick(account_locale) or from_accept_language(accept_language) or DEFAULT_LANG,
        False,
    )
