"""Delivery adapters of the notification outbox: SMS through a signed webhook relay and WeChat
Official Account template messages. The dispatcher sees only the `Notifier` protocol, so tests
and other gateways plug in the same way."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from ehospital.kit.models import utcnow
from ehospital.notifications.models import Notification

DEFAULT_TIMEOUT = 10.0  # seconds, per HTTP request
WECHAT_API = "https://api.weixin.qq.com"
_CHINA = ZoneInfo("Asia/Shanghai")
# 4xx answers that mean "later", not "never": request timeout, too early, rate limited.
_TEMPORARY_4XX = frozenset({408, 425, 429})
# WeChat errcodes: the access token is invalid or expired (fetch a new one and retry), or the
# platform is busy. Every other non-zero errcode is about the message itself and is final.
_WECHAT_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
_WECHAT_BUSY = frozenset({-1})


class DeliveryError(Exception):
    """A notification could not be delivered; `permanent` ones are never retried."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Recipient:
    """Where an account can be reached."""

    account_id: int
    phone: str | None
    locale: str = "zh"
    wechat_openid: str | None = None  # no account is linked to WeChat yet


class Notifier(Protocol):
    """Delivers notifications of one channel; raises DeliveryError when it cannot."""

    channel: str

    async def send(self, n: Notification, recipient: Recipient) -> None: ...


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


class _Http:
    """One pooled HTTP client, created on first use (inside the running event loop)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        try:
            return await self._client.post(url, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"no answer within {self.timeout:g} s", permanent=False) from exc
        except httpx.HTTPError as exc:  # refused, reset, DNS, TLS: the far end may come back
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300], permanent=False) from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _check_url(url: str, what: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{what} must be an http(s) URL, not {url!r}")
    return url.rstrip("/")


def _check_status(response: httpx.Response, who: str) -> None:
    """2xx passes; other 4xx are final (the request itself is wrong); the rest may pass later."""
    status = response.status_code
    if 200 <= status < 300:
        return
    permanent = 400 <= status < 500 and status not in _TEMPORARY_4XX
    raise DeliveryError(f"{who} answered HTTP {status}: {response.text[:200]}", permanent=permanent)


def _json_object(response: httpx.Response, who: str) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DeliveryError(f"{who} answered something other than a JSON object", permanent=False)
    return answer


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookSms:
    """SMS through an HTTP relay (the generic shape of Chinese SMS gateway relays): POST
    `{"to", "text", "id"}` signed `X-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    `id` is the notification's, so a relay can drop the rare duplicate of a retried send."""

    channel = "sms"

    def __init__(self, url: str, secret: str | bytes, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not secret:
            raise ValueError("the SMS relay needs a shared secret to sign its requests")
        self.url = _check_url(url, "the SMS relay URL")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._http = _Http(timeout)

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def payload(self, n: Notification, recipient: Recipient) -> bytes:
        text = f"{n.title}\n{n.body}" if n.body else n.title
        return _json_bytes({"to": recipient.phone, "text": text, "id": n.id})

    async def send(self, n: Notification, recipient: Recipient) -> None:
        if not recipient.phone:
            raise DeliveryError("the account has no phone number", permanent=True)
        body = self.payload(n, recipient)
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Signature": self.sign(body)}
        _check_status(await self._http.post(self.url, content=body, headers=headers), "the SMS relay")

    async def aclose(self) -> None:
        await self._http.aclose()


class AccessTokenProvider(Protocol):
    """The Official Account's access token, and a way to drop one WeChat has refused."""

    async def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class StableAccessToken:
    """Access tokens from `POST /cgi-bin/stable_token`, cached until 5 minutes before they
    expire. The stable token is the same for every caller, so several server processes do not
    invalidate one another's tokens (as each call of `/cgi-bin/token` would)."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        *,
        api_base: str = WECHAT_API,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_id = app_id
        self._secret = app_secret
        self.api_base = _check_url(api_base, "the WeChat API base")
        self._http = _Http(timeout)
        self._clock = clock
        self._lock = asyncio.Lock()  # one fetch at a time; the others wait for its token
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or self._clock() >= self._expires:
                self._token, lifetime = await self._fetch()
                self._expires = self._clock() + max(lifetime - 300, 60)
            return self._token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, int]:
        body = _json_bytes({"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret})
        response = await self._http.post(
            f"{self.api_base}/cgi-bin/stable_token",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        _check_status(response, "WeChat (access token)")
        answer = _json_object(response, "WeChat (access token)")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            # Wrong app secret, server address not whitelisted …: a configuration problem that
            # an operator can fix while the notification waits for its next attempt.
            raise DeliveryError(
                f"WeChat gave no access token: errcode {answer.get('errcode')} {answer.get('errmsg', '')}",
                permanent=False,
            )
        lifetime = answer.get("expires_in")
        return token, lifetime if isinstance(lifetime, int) else 7200

    async def aclose(self) -> None:
        await self._http.aclose()


def template_data(n: Notification) -> dict[str, str]:
    """The template's fields: title first, the body as keyword1, the time (China) as keyword2."""
    at = (n.created_at or utcnow()).astimezone(_CHINA)
    return {"first": n.title, "keyword1": n.body, "keyword2": at.strftime("%Y-%m-%d %H:%M")}


class WeChatTemplate:
    """WeChat Official Account template messages (`/cgi-bin/message/template/send`). Which
    keywords a template has is chosen in the WeChat back office: pass `data` to map them."""

    channel = "wechat"

    def __init__(
        self,
        template_id: str,
        tokens: AccessTokenProvider,
        *,
        api_base: str = WECHAT_API,
        timeout: float = DEFAULT_TIMEOUT,
        data: Callable[[Notification], Mapping[str, str]] = template_data,
    ) -> None:
        if not template_id:
            raise ValueError("a WeChat template message needs a template id")
        self.template_id = template_id
        self.tokens = tokens
        self.api_base = _check_url(api_base, "the WeChat API base")
        self._data = data
        self._http = _Http(timeout)

    def payload(self, n: Notification, openid: str) -> bytes:
        return _json_bytes(
            {
                "touser": openid,
                "template_id": self.template_id,
                # WeChat sends one message per openid and client_msg_id: a retried send after
                # a lost answer does not reach the patient twice.
                "client_msg_id": f"ehospital-{n.id}",
                "data": {key: {"value": value} for key, value in self._data(n).items()},
            }
        )

    async def send(self, n: Notification, recipient: Recipient) -> None:
        if not recipient.wechat_openid:
            raise DeliveryError("the account is not linked to WeChat", permanent=True)
        token = await self.tokens.token()
        response = await self._http.post(
            f"{self.api_base}/cgi-bin/message/template/send?access_token={quote(token, safe='')}",
            content=self.payload(n, recipient.wechat_openid),
            headers={"Content-Type": "application/json"},
        )
        _check_status(response, "WeChat")
        answer = _json_object(response, "WeChat")
        errcode = answer.get("errcode", 0)
        if errcode == 0:
            return
        message = f"WeChat refused the message: errcode {errcode} {answer.get('errmsg', '')}"[:300]
        if errcode in _WECHAT_TOKEN_ERRORS:
            self.tokens.invalidate(token)  # the next attempt fetches a fresh one
            raise DeliveryError(message, permanent=False)
        raise DeliveryError(message, permanent=errcode not in _WECHAT_BUSY)

    async def aclose(self) -> None:
        await self._http.aclose()
        if isinstance(self.tokens, Closable):
            await self.tokens.aclose()


class NotifierSettings(Protocol):
    """The configuration `adapters_from` reads (ehospital.config.Settings has these fields)."""

    @property
    def sms_webhook_url(self) -> str: ...
    @property
    def sms_webhook_secret(self) -> str: ...
    @property
    def wechat_api_base(self) -> str: ...
    @property
    def wechat_app_id(self) -> str: ...
    @property
    def wechat_app_secret(self) -> str: ...
    @property
    def wechat_template_id(self) -> str: ...


def adapters_from(settings: NotifierSettings, *, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Notifier]:
    """The configured adapters by channel; a channel left unconfigured has none (the dispatcher
    then fails its notifications with a clear error). Half a configuration is refused."""
    adapters: dict[str, Notifier] = {}
    if settings.sms_webhook_url:
        if not settings.sms_webhook_secret:
            raise ValueError("EHOSPITAL_SMS_WEBHOOK_SECRET must be set with EHOSPITAL_SMS_WEBHOOK_URL")
        adapters["sms"] = WebhookSms(settings.sms_webhook_url, settings.sms_webhook_secret, timeout=timeout)
    wechat = (settings.wechat_app_id, settings.wechat_app_secret, settings.wechat_template_id)
    if all(wechat):
        tokens = StableAccessToken(
            settings.wechat_app_id,
            settings.wechat_app_secret,
            api_base=settings.wechat_api_base,
            timeout=timeout,
        )
        adapters["wechat"] = WeChatTemplate(
            settings.wechat_template_id, tokens, api_base=settings.wechat_api_base, timeout=timeout
        )
    elif any(wechat):
        raise ValueError(
            "WeChat needs all of EHOSPITAL_WECHAT_APP_ID, EHOSPITAL_WECHAT_APP_SECRET and "
            "EHOSPITAL_WECHAT_TEMPLATE_ID"
        )
    return adapters


async def close_adapters(adapters: Mapping[str, Notifier]) -> None:
    """Close the HTTP connections the adapters hold (at shutdown)."""
    for adapter in adapters.values():
        if isinstance(adapter, Closable):
            await adapter.aclose()
