"""Reading posted forms and turning validation and domain errors into localised messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import FormData, UploadFile

from ehospital.kit.errors import DomainError
from ehospital.web.i18n import Translator, has


@dataclass
class FormState:
    """What one form on a page shows after a failed post: its values and messages."""

    form: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    code: str | None = None

    def of(self, name: str) -> FormState:
        """This state if it belongs to form `name`, else an empty one."""
        return self if self.form == name else EMPTY

    def value(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


EMPTY = FormState()


def text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def optional(form: FormData, key: str) -> str | None:
    """A field the user may leave empty: '' becomes None."""
    return text(form, key) or None


def values_of(form: FormData, *keys: str) -> dict[str, str]:
    """The text fields to put back into a re-rendered form (never passwords, never files)."""
    return {key: text(form, key) for key in keys}


def uploads(form: FormData, key: str) -> list[UploadFile]:
    """The files chosen in a file input; an empty input posts one nameless empty part."""
    return [f for f in form.getlist(key) if isinstance(f, UploadFile) and f.filename]


def domain_message(t: Translator, code: str, message: str) -> str:
    """The catalogued text of an error code, else the service's own (English) message."""
    key = f"error.{code}"
    return t(key) if has(key, t.lang) else message


def failed(t: Translator, form: str, exc: DomainError, values: Mapping[str, str]) -> FormState:
    return FormState(form=form, values=values, error=domain_message(t, exc.code, exc.message), code=exc.code)


def _field_message(t: Translator, err: ErrorDetails, form: str, name: str) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return t("validation.required")
    if kind == "string_too_short":
        return t("validation.min_length", min=ctx.get("min_length", ""))
    if kind == "string_too_long":
        return t("validation.max_length", max=ctx.get("max_length", ""))
    if kind == "string_pattern_mismatch":
        # "clinic-7" is the clinic form of centre 7: the kind of form is what names the rule.
        specific = f"validation.pattern.{form.split('-')[0]}.{name}"
        return t(specific) if has(specific, t.lang) else t("validation.pattern")
    if kind.startswith("date_"):
        return t("validation.date")
    if kind.startswith(("int_", "float_", "decimal_")):
        return t("validation.number")
    if kind in ("literal_error", "enum"):
        return t("validation.choice")
    if kind == "too_long":
        return t("validation.too_many", max=ctx.get("max_length", ""))
    return t("validation.invalid")


def invalid(
    t: Translator,
    form: str,
    exc: ValidationError,
    values: Mapping[str, str],
    *,
    rename: Mapping[str, str] = {},
    locate: Callable[[tuple[int | str, ...]], str] | None = None,
) -> FormState:
    """A form state with one localised message per field (the model's field names, or `rename`d,
    or what `locate` makes of an error's whole location: nested fields such as items.1.dose)."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        if locate is not None:
            name = locate(tuple(err["loc"]))
        else:
            name = str(err["loc"][0]) if err["loc"] else "form"
        name = rename.get(name, name)
        fields.setdefault(name, _field_message(t, err, form, name))
    return FormState(
        form=form, values=values, fields=fields, error=t("validation.summary"), code="validation_error"
    )


def field_error(
    t: Translator, form: str, name: str, key: str, values: Mapping[str, str], **params: Any
) -> FormState:
    """A form state with one message of our own on one field."""
    return FormState(
        form=form,
        values=values,
        fields={name: t(key, **params)},
        error=t("validation.summary"),
        code="validation_error",
    )
