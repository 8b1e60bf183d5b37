"""Auth payloads."""

from __future__ import annotations

from pydantic import Field

from ehospital.kit.schemas import Input, Output, Password


class PatientAccountCreate(Input):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: Password
    display_name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")
    locale: str = Field(default="zh", pattern=r"^(zh|en)$")


class TokenResponse(Output):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class AccountRead(Output):
    id: int
    username: str
    role: str
    display_name: str
    locale: str
    doctor_id: int | None = None
    doctor_verified: bool | None = None


class RevokedCount(Output):
    revoked: int
