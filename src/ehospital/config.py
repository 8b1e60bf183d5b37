"""Settings read from the environment (prefix EHOSPITAL_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as EHOSPITAL_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="EHOSPITAL_", extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    # Bearer tokens for the API are short-lived; the web session lives a working day.
    access_token_minutes: int = 30
    session_hours: int = 12
    # How long a process trusts a token it has checked before asking the database again
    # (revocation through another process takes effect within this time; 0 disables).
    token_cache_seconds: float = 5.0
    cookie_secure: bool = True
    # Shared secret of the local demo payment provider (generated under data_dir/keys if empty).
    payment_local_secret: str = ""
    # Failed sign-ins tolerated per window before further attempts are refused.
    login_window_minutes: int = 15
    login_max_failures_account: int = 5
    login_max_failures_address: int = 30
    upload_max_bytes: int = 10 * 1024 * 1024
    upload_max_pixels: int = 40_000_000
    # A consultation nobody accepts within this many hours expires.
    consultation_accept_hours: int = 24
    audit_seal_seconds: float = 1.0
    db_pool_size: int = Field(default=20, ge=1)  # connections per process (fixed)
    # EHRs trusted to call the CDS Hooks service with their signed JWTs (see vetting/cds_auth.py);
    # without it only ehospital doctors' and pharmacists' bearer tokens are accepted.
    cds_clients_file: Path | None = None
    # The message broker that lets several server processes share live chat (redis://host:6379/0);
    # empty: one process, which fans messages out in memory.
    broker_url: str = ""
    # STUN/TURN servers handed to the browsers of a video call (WebRTC), as JSON:
    # [{"urls": ["stun:stun.example.org:3478"]}, {"urls": "turn:…", "username": "…", "credential": "…"}].
    # Empty: direct connections only (enough on one network, not across most NATs).
    ice_servers: list[dict[str, Any]] = Field(default_factory=list)
    # The MQTT broker glucose devices publish to (mqtt://host:1883); empty: no bridge.
    mqtt_url: str = ""
    # The shared-subscription group of this deployment's processes (default: named after the
    # database, so two deployments on one broker never take each other's messages).
    mqtt_group: str = ""
    # Channels besides in-app that carry an urgent-low alert to the patient (e.g. ["sms"]).
    glucose_urgent_channels: list[str] = Field(default_factory=list)
    # Notifications (notifications/adapters.py). SMS through a relay that verifies
    # X-Signature: sha256=<HMAC>; without a URL, queued SMS fail with a clear error.
    sms_webhook_url: str = ""
    sms_webhook_secret: str = ""
    # WeChat Official Account template messages: app id, secret and template id together, or none.
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_template_id: str = ""
    # How often the glucose watcher looks for silent CGMs, unacknowledged alerts and due reminders.
    glucose_watch_seconds: float = 60.0

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or a SQLite file under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ehospital.sqlite3').resolve()}"

    @property
    def audit_anchor_path(self) -> Path:
        """Where the audit chain's head is recorded outside the database."""
        return self.data_dir / "audit-head.json"

    @property
    def key_dir(self) -> Path:
        """Doctors' signing keys (0700; each key file 0600)."""
        return self.data_dir / "keys"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own)."""
    return Settings()
