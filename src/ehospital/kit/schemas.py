"""Pydantic bases: inputs refuse unknown fields; outputs read from ORM objects."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Row ids are 64-bit signed integers in both databases; a bigger number is a typo or a probe.
MAX_DB_ID = 2**63 - 1
MAX_SEQ = 2**31 - 1
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
# Passwords are taken exactly as typed (inputs strip whitespace otherwise): the sign-in form
# compares them unstripped, so a stripped hash would lock out a password ending in a space.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=8, max_length=128)]


class Input(BaseModel):
    """Request bodies: unknown fields and type coercion from strings are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, object] | None = None


class ErrorResponse(BaseModel):
    """Every 4xx has this shape; `code` is the machine-readable reason."""

    error: ErrorBody
