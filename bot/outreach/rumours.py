"""Rumours: statements going around, with the commune's "vrai / faux" answer, its source
and its date. Editors publish them in the console; the bot matches citizens' questions
against the published statements (bot.outreach.matching)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update

from bot.db import session_scope, utcnow
from bot.db.outreach_models import RUMOUR_STATUSES, VERDICTS, Rumour
from bot.outreach.matching import best_match, framed
from bot.outreach.subscriptions import migrated

MAX_STATEMENT = 300
MAX_ANSWER = 1000
MAX_SOURCE = 500
STRICT_COVERAGE, LENIENT_COVERAGE = 0.5, 0.34
VERDICT_LABELS = {"vrai": "VRAI", "faux": "FAUX", "trompeur": "TROMPEUR"}


class RumourError(ValueError):
    """Invalid rumour (the text is French, for the console)."""


@dataclass(frozen=True)
class RumourEntry:
    id: int
    statement: str
    verdict: str
    answer: str
    source: str
    source_date: dt.date
    status: str
    updated_at: dt.datetime


def _entry(row: Rumour) -> RumourEntry:
    return RumourEntry(row.id, row.statement, row.verdict, row.answer, row.source, row.source_date, row.status,
                       row.updated_at)


class Rumours:
    def __init__(self, url: str) -> None:
        self.url = url
        migrated(url)

    def all(self) -> list[RumourEntry]:
        with session_scope(self.url) as s:
            rows = s.execute(select(Rumour).order_by(Rumour.status, Rumour.updated_at.desc())).scalars().all()
            return [_entry(r) for r in rows]

    def published(self) -> list[RumourEntry]:
        with session_scope(self.url) as s:
            rows = s.execute(
                select(Rumour).where(Rumour.status == "published").order_by(Rumour.id)
            ).scalars().all()
            return [_entry(r) for r in rows]

    def get(self, rumour_id: int) -> RumourEntry | None:
        with session_scope(self.url) as s:
            row = s.get(Rumour, rumour_id)
            return _entry(row) if row else None

    @staticmethod
    def _check(statement: str, verdict: str, answer: str, source: str, source_date: dt.date | None) -> None:
        if not statement or len(statement) > MAX_STATEMENT:
            raise RumourError(f"L'affirmation est obligatoire ({MAX_STATEMENT} caractères au plus).")
        if verdict not in VERDICTS:
            raise RumourError("Choisissez « vrai », « faux » ou « trompeur ».")
        if not answer or len(answer) > MAX_ANSWER:
            raise RumourError(f"La réponse officielle est obligatoire ({MAX_ANSWER} caractères au plus).")
        if not source or len(source) > MAX_SOURCE:
            raise RumourError("La source (lien ou document officiel) est obligatoire.")
        if source_date is None:
            raise RumourError("La date de la source est obligatoire.")

    def save(self, statement: str, verdict: str, answer: str, source: str, source_date: dt.date | None,
             status: str = "draft", rumour_id: int | None = None, author: int | None = None) -> RumourEntry:
        statement, answer, source = statement.strip(), answer.strip(), source.strip()
        self._check(statement, verdict, answer, source, source_date)
        if status not in RUMOUR_STATUSES:
            raise RumourError("État inconnu.")
        with session_scope(self.url) as s:
            row = s.get(Rumour, rumour_id) if rumour_id else None
            if rumour_id and row is None:
                raise RumourError("Cette rumeur n'existe plus.")
            if row is None:
                row = Rumour(created_by=author)
                s.add(row)
            row.statement, row.verdict, row.answer, row.source = statement, verdict, answer, source
            row.source_date, row.status, row.updated_at = source_date, status, utcnow()
            s.flush()
            return _entry(row)

    def set_status(self, rumour_id: int, status: str) -> bool:
        if status not in RUMOUR_STATUSES:
            raise RumourError("État inconnu.")
        with session_scope(self.url) as s:
            return bool(s.execute(
                update(Rumour).where(Rumour.id == rumour_id).values(status=status, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount)

    def match(self, question: str, min_similarity: float, lenient: bool = False) -> RumourEntry | None:
        """The published rumour the question is about, if similar enough. A question framed
        as a rumour check ("c'est vrai que…", or `lenient`: the NLU said so) may name a
        third of the statement's content words; any other, half of them."""
        rumours = self.published()
        coverage = LENIENT_COVERAGE if lenient or framed(question) else STRICT_COVERAGE
        found = best_match(question, [r.statement for r in rumours], min_similarity, coverage)
        return rumours[found.index] if found else None
