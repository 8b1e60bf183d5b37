"""Domain errors carry their HTTP status and a machine-readable code; one handler renders them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

S = TypeVar("S")


class DomainError(Exception):
    """Base of every error the service layer raises on purpose."""

    status_code = 400
    code = "bad_request"
    # True when what the request wrote before failing must still be committed (e.g. the
    # record of a failed sign-in); the request boundary commits instead of rolling back.
    keep_writes = False

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class BadRequest(DomainError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(DomainError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class NotFound(DomainError):
    """Also what a caller sees for a resource that exists but is not theirs."""

    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMedia(DomainError):
    status_code = 415
    code = "unsupported_media_type"


class Unprocessable(DomainError):
    status_code = 422
    code = "unprocessable"


class TooManyRequests(DomainError):
    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(DomainError):
    """A part the request needs is missing (e.g. a knowledge source not installed)."""

    status_code = 503
    code = "service_unavailable"


def require_move(moves: Mapping[S, frozenset[S]], current: S, to: S, what: str) -> None:
    """A state machine's guard: 409 `invalid_transition` with the current state unless `to` is
    among the moves allowed from `current` (`what` names the thing: "an order")."""
    if to not in moves.get(current, frozenset()):
        raise Conflict(
            f"{what} that is {current} cannot become {to}",
            code="invalid_transition",
            state=str(current),
            requested=str(to),
        )
