"""Rasa's SQL tracker store, with connections checked before use.

Rasa's `SQLTrackerStore` keeps a pool of PostgreSQL connections without testing them:
after PostgreSQL restarts, each replica fails the next message on a dead connection
(the citizen gets the safety net's contact details instead of the answer). This one
pings a connection when it leaves the pool (SQLAlchemy's `pool_pre_ping`) and reconnects.

endpoints.yml: `tracker_store: {type: bot.tracker_store.ResilientSQLTrackerStore,
dialect: postgresql, url: <host>, port: …, db: …, username: …, password: …}` (the
options of Rasa's `SQL` type).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs


class ResilientSQLTrackerStore(SQLTrackerStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, pool_pre_ping=True, **create_engine_kwargs(url))
        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)
