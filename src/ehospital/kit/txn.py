"""Work that must wait until the request's transaction has committed."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_KEY = "ehospital.after_commit"


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Run `fn` once the session's outermost transaction commits (dropped on rollback)."""
    session.sync_session.info.setdefault(_KEY, []).append(fn)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    for fn in session.info.pop(_KEY, []):
        fn()


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
