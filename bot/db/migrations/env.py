"""Alembic environment: run by `bot.db.migrate`, never with an alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool
from sqlalchemy.future import create_engine

from bot.db.models import Base

config = context.config
VERSION_TABLE = "guichet_alembic_version"


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # noqa: ANN001
    # Rasa's own tables (events) live in the same database: never touch them.
    return not (type_ == "table" and reflected and not str(name).startswith("guichet_"))


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        connection = engine.connect()
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=True,  # SQLite cannot ALTER most things: batch mode copies tables
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
