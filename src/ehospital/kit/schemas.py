"""Pydantic bases: inputs refuse unknown fields; outputs read from ORM objects."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# Row ids are 64-bit signed integers in both databases; a bigger number is a typo or a probe.
MAX_DB_ID = 2**63 - 1
MAX_SEQ = 2**31 - 1
DbId = Annotated[int, Field(ge=1, le=MAX_DB_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_DB_ID)]


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
