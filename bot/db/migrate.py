"""Apply the Alembic migrations of `bot/db/migrations` to a database URL."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from bot.db.engine import get_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Alembic's migration context is process-global: one migration at a time per process.
_lock = threading.RLock()
_upgraded: set[str] = set()
# Any constant: PostgreSQL serialises processes migrating the same database on it.
_PG_LOCK_KEY = 7_460_133


def upgrade(url: str, revision: str = "head") -> None:
    """Brings the database at `url` to `revision` (idempotent, thread- and process-safe)."""
    config = alembic_config(url)
    with _lock, get_engine(url).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def ensure_upgraded(url: str) -> None:
    """`upgrade(url)` once per process (cheap to call before every use)."""
    if url in _upgraded:
        return
    with _lock:
        if url not in _upgraded:
            upgrade(url)
            _upgraded.add(url)


def downgrade(url: str, revision: str) -> None:
    config = alembic_config(url)
    with _lock, get_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": "guichet_alembic_version"})
        return context.get_current_revision()
