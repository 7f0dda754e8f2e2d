"""Engines and sessions (SQLAlchemy 1.4 in 2.0 style: `future=True`, `select()`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.future import create_engine
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> dt.datetime:
    """Naive UTC now: every timestamp of ours is stored as naive UTC."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
    cursor = dbapi_connection.cursor()
    # WAL lets the console read while Rasa writes the tracker store in the same file;
    # the busy timeout makes concurrent writers wait instead of failing. Every commit
    # stays synced to disk (SQLite's default `synchronous=FULL`: `NORMAL` was measured
    # and not faster under load, bench/messenger_webhook.py, 2026-12-05).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


SQLITE_CONNECT_ARGS = {"timeout": 30, "check_same_thread": False}


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine per URL and process (a pool shared by all threads)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=SQLITE_CONNECT_ARGS)
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@lru_cache(maxsize=8)
def sessionmaker_for(url: str) -> sessionmaker:
    return sessionmaker(get_engine(url), future=True, expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session: Session = sessionmaker_for(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
