"""Is the town hall open, and when does it open next?

Opening hours per weekday and exceptional closures come from the commune's settings file
(`bot.commune`); French public holidays from the `holidays` library (in French, with an
optional regional subdivision such as Alsace-Moselle's "57").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import holidays

from bot.commune import WEEKDAYS, Commune, format_date, format_time

# How far ahead to look for the next opening (long summer closures included).
HORIZON_DAYS = 60


@lru_cache(maxsize=16)
def _holidays(subdivision: str, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("FR", subdiv=subdivision or None, years=year, language="fr")


def holiday_name(day: dt.date, subdivision: str = "") -> str | None:
    return _holidays(subdivision, day.year).get(day)


@dataclass(frozen=True)
class OpeningCalendar:
    commune: Commune
    subdivision: str = ""

    def closed_reason(self, day: dt.date) -> str | None:
        """Why the town hall is closed all day (None if it has hours that day)."""
        name = holiday_name(day, self.subdivision)
        if name:
            return f"jour férié ({name})"
        for closure in self.commune.closures:
            if closure.start <= day <= closure.end:
                return f"fermeture exceptionnelle ({closure.reason})" if closure.reason else "fermeture exceptionnelle"
        if not self.commune.hours[WEEKDAYS[day.weekday()]]:
            return f"fermé le {WEEKDAYS[day.weekday()]}"
        return None

    def is_open(self, at: dt.datetime) -> bool:
        """`at` is a local datetime (naive or aware: only its wall-clock time is read)."""
        if self.closed_reason(at.date()) is not None:
            return False
        now = at.time().replace(tzinfo=None)
        return any(r.start <= now < r.end for r in self.commune.hours[WEEKDAYS[at.weekday()]])

    def next_opening(self, at: dt.datetime) -> dt.datetime | None:
        """The next start of an opening range strictly after `at` (same tzinfo as `at`)."""
        for offset in range(HORIZON_DAYS + 1):
            day = at.date() + dt.timedelta(days=offset)
            if self.closed_reason(day) is not None:
                continue
            for opening in self.commune.hours[WEEKDAYS[day.weekday()]]:
                start = dt.datetime.combine(day, opening.start, tzinfo=at.tzinfo)
                if start > at:
                    return start
        return None


def describe_opening(opening: dt.datetime | None, now: dt.datetime) -> str:
    """In French: "aujourd'hui à 13 h 30", "demain, vendredi 27 novembre, à 8 h 30"…"""
    if opening is None:
        return "à une date qui n'est pas encore connue"
    days = (opening.date() - now.date()).days
    hour = format_time(opening.time())
    if days == 0:
        return f"aujourd'hui à {hour}"
    weekday = WEEKDAYS[opening.weekday()]
    date = format_date(opening.date())
    if opening.year == now.year:
        date = date.rsplit(" ", 1)[0]
    if days == 1:
        return f"demain, {weekday} {date}, à {hour}"
    return f"le {weekday} {date} à {hour}"
