"""The commune's facts (`commune.yml`) and the placeholders answers use to quote them.

Answers never hard-code a phone number or an opening hour: they hold placeholders such
as `{telephone}` or `{tarifs.cantine}` that `Commune.render()` fills from the settings
file, so a commune changes its facts without retraining anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from bot.settings import get_settings
from bot.yaml_file import ReloadingFile

logger = logging.getLogger(__name__)

WEEKDAYS = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
MONTHS = [
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
]
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\}")


class CommuneError(ValueError):
    """The settings file is invalid, or an answer references an unknown fact."""


@dataclass(frozen=True)
class TimeRange:
    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        try:
            start, end = (dt.time.fromisoformat(part.strip()) for part in text.split("-"))
        except ValueError as exc:
            raise CommuneError(f"invalid opening range {text!r}, expected 'HH:MM-HH:MM'") from exc
        if start >= end:
            raise CommuneError(f"opening range {text!r} ends before it starts")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{format_time(self.start)} - {format_time(self.end)}"


@dataclass(frozen=True)
class Closure:
    start: dt.date
    end: dt.date
    reason: str

    def __str__(self) -> str:
        if self.start == self.end:
            span = f"le {format_date(self.start)}"
        elif (self.start.year, self.start.month) == (self.end.year, self.end.month):
            first = "1er" if self.start.day == 1 else str(self.start.day)
            span = f"du {first} au {format_date(self.end)}"
        else:
            span = f"du {format_date(self.start)} au {format_date(self.end)}"
        return f"{span} ({self.reason})" if self.reason else span


def format_time(value: dt.time) -> str:
    return f"{value.hour} h" + (f" {value.minute:02d}" if value.minute else "")


def format_date(value: dt.date) -> str:
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {MONTHS[value.month - 1]} {value.year}"


@dataclass(frozen=True)
class Commune:
    """Parsed `commune.yml`: the raw facts plus the structured hours and closures."""

    facts: dict[str, Any]
    hours: dict[str, tuple[TimeRange, ...]]
    closures: tuple[Closure, ...]
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Any) -> Commune:
        if not isinstance(data, dict):
            raise CommuneError("commune.yml must be a mapping")
        for key in ("nom", "mairie", "horaires"):
            if key not in data:
                raise CommuneError(f"commune.yml lacks the required key {key!r}")
        for key in ("adresse", "telephone"):
            if not data["mairie"].get(key):
                raise CommuneError(f"commune.yml lacks mairie.{key}")
        unknown_days = set(data["horaires"]) - set(WEEKDAYS)
        if unknown_days:
            raise CommuneError(f"unknown weekdays in horaires: {sorted(unknown_days)}")
        hours = {
            day: tuple(TimeRange.parse(r) for r in (data["horaires"].get(day) or []))
            for day in WEEKDAYS
        }
        closures = tuple(
            Closure(_as_date(c["du"]), _as_date(c.get("au", c["du"])), c.get("motif", ""))
            for c in data.get("fermetures") or []
        )
        commune = cls(facts=data, hours=hours, closures=closures)
        commune._values.update(commune._computed_values())
        return commune

    # Facts ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.facts["nom"])

    @property
    def phone(self) -> str:
        return str(self.facts["mairie"]["telephone"])

    def hours_text(self) -> str:
        """Opening hours on one line, days with the same hours grouped."""
        groups: dict[tuple[TimeRange, ...], list[str]] = {}
        for day in WEEKDAYS:
            if self.hours[day]:
                groups.setdefault(self.hours[day], []).append(day)
        parts = [
            f"{_join(days)} : {' et '.join(str(r) for r in ranges)}"
            for ranges, days in groups.items()
        ]
        closed = [day for day in WEEKDAYS if not self.hours[day]]
        if closed:
            parts.append(f"fermé le {_join(closed)}")
        return " ; ".join(parts)

    def upcoming_closures(self, today: dt.date | None = None) -> list[Closure]:
        today = today or dt.date.today()
        return [c for c in self.closures if c.end >= today]

    def closures_text(self, today: dt.date | None = None) -> str:
        upcoming = self.upcoming_closures(today)
        if not upcoming:
            return "aucune fermeture exceptionnelle prévue"
        return "fermeture exceptionnelle " + ", ".join(str(c) for c in upcoming)

    def contact_text(self) -> str:
        """The town hall's contact details: what every dead end falls back to."""
        mairie = self.facts["mairie"]
        lines = [
            f"📞 {mairie['telephone']}",
            f"📍 {mairie['adresse']}",
        ]
        if mairie.get("courriel"):
            lines.append(f"✉️ {mairie['courriel']}")
        lines.append(f"🕒 {self.hours_text()}")
        return "\n".join(lines)

    # Placeholders ---------------------------------------------------------------------
    def _computed_values(self) -> dict[str, str]:
        mairie = self.facts["mairie"]
        recueil = (
            "La mairie de {commune} est équipée pour recevoir les demandes de carte "
            "d'identité et de passeport, sur rendez-vous."
            if mairie.get("dispositif_recueil")
            else "La mairie de {commune} n'est pas équipée pour les cartes d'identité et "
            "passeports : prenez rendez-vous dans une mairie équipée (n'importe laquelle)."
        )
        return {
            "commune": self.name,
            "adresse": str(mairie["adresse"]),
            "telephone": self.phone,
            "courriel": str(mairie.get("courriel", "")),
            "site_web": str(mairie.get("site_web", "")),
            "formulaire_contact": str(mairie.get("formulaire_contact") or mairie.get("site_web", "")),
            "lien_rendez_vous": str(mairie.get("rendez_vous") or mairie.get("site_web", "")),
            "horaires": self.hours_text(),
            "dispositif_recueil": recueil.replace("{commune}", self.name),
        }

    def value(self, key: str) -> str:
        """The text of one placeholder; raises CommuneError if it names no fact."""
        if key == "fermetures":
            return self.closures_text()
        if key in self._values:
            return self._values[key]
        node: Any = self.facts
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise CommuneError(f"unknown placeholder {{{key}}}")
            node = node[part]
        if isinstance(node, dict):
            return " ; ".join(f"{k} : {v}" for k, v in node.items())
        if isinstance(node, list):
            return ", ".join(str(item) for item in node)
        return str(node)

    def placeholders(self, template: str) -> list[str]:
        return PLACEHOLDER.findall(template)

    def check(self, template: str) -> list[str]:
        """The placeholders of `template` that name no fact (empty when all resolve)."""
        bad = []
        for key in self.placeholders(template):
            try:
                self.value(key)
            except CommuneError:
                bad.append(key)
        return bad

    def render(self, template: str) -> str:
        """Fills the placeholders; an unknown one becomes a pointer to the town hall."""

        def fill(match: re.Match[str]) -> str:
            try:
                return self.value(match.group(1))
            except CommuneError:
                logger.error("Answer references unknown commune fact {%s}", match.group(1))
                return f"(renseignez-vous auprès de la mairie au {self.phone})"

        return PLACEHOLDER.sub(fill, template)


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise CommuneError(f"invalid date {value!r} in fermetures, expected YYYY-MM-DD") from exc


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " et " + items[-1]


@cache
def _source(path: Path) -> ReloadingFile[Commune]:
    return ReloadingFile(path, Commune.from_dict)


def load_commune(path: Path | None = None) -> Commune:
    """The commune of `path` (default: GUICHET_COMMUNE_FILE), re-read when it changes."""
    return _source(path or get_settings().commune_file).get()
