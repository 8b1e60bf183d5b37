"""Who is acting, from where: passed from the request boundary to every service call."""

from __future__ import annotations

from dataclasses import dataclass

from ehospital.auth.models import Role


@dataclass(frozen=True, slots=True)
class Actor:
    """The signed-in principal plus the request facts the audit trail needs."""

    account_id: int
    role: Role
    username: str
    display_name: str
    locale: str = "zh"
    doctor_id: int | None = None
    doctor_centre_id: int | None = None
    doctor_verified: bool = False
    organisation_id: int | None = None
    centre_id: int | None = None
    address: str | None = None
    request_id: str | None = None
    token_hash: bytes | None = None

    @property
    def is_patient(self) -> bool:
        return self.role is Role.PATIENT

    @property
    def is_doctor(self) -> bool:
        return self.role is Role.DOCTOR and self.doctor_id is not None

    @property
    def is_practising_doctor(self) -> bool:
        """A doctor whose licence an admin has verified: the only kind that sees patients."""
        return self.is_doctor and self.doctor_verified

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


SYSTEM = Actor(account_id=0, role=Role.ADMIN, username="system", display_name="system")
