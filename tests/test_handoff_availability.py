"""Opening hours, French public holidays, exceptional closures, next opening, references."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.commune import Commune, load_commune
from bot.handoff.availability import OpeningCalendar, describe_opening, holiday_name
from bot.handoff.references import ALPHABET, PATTERN, new_reference, normalise_reference
from bot.settings import PROJECT_ROOT

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture(scope="module")
def calendar() -> OpeningCalendar:
    return OpeningCalendar(load_commune(PROJECT_ROOT / "commune.yml"))


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=PARIS)


@pytest.mark.parametrize(("moment", "is_open"), [
    ("2026-03-03T10:00", True),    # Tuesday morning
    ("2026-03-03T12:30", False),   # lunch break
    ("2026-03-03T13:30", True),    # first minute of the afternoon
    ("2026-03-03T17:30", False),   # closing time is closed
    ("2026-03-04T15:00", False),   # Wednesday afternoon: closed
    ("2026-03-07T09:30", True),    # Saturday morning
    ("2026-03-08T10:00", False),   # Sunday
])
def test_weekday_hours(calendar, moment, is_open):
    assert calendar.is_open(at(moment)) is is_open


@pytest.mark.parametrize("day", ["2026-05-01", "2026-05-14", "2026-07-14", "2026-11-11", "2027-03-29"])
def test_french_public_holidays_are_closed(calendar, day):
    # 1 May, Ascension 2026, 14 July, 11 November (a Wednesday morning), Easter Monday 2027
    assert calendar.closed_reason(dt.date.fromisoformat(day)).startswith("jour férié")
    assert not calendar.is_open(at(f"{day}T10:00"))


def test_holiday_names_are_french():
    assert holiday_name(dt.date(2026, 7, 14)) == "Fête nationale"


def test_alsace_moselle_holidays_by_subdivision():
    good_friday = dt.date(2026, 4, 3)
    assert holiday_name(good_friday) is None
    assert holiday_name(good_friday, "57") is not None


def test_exceptional_closure_from_the_commune_file(calendar):
    reason = calendar.closed_reason(dt.date(2026, 12, 24))
    assert reason == "fermeture exceptionnelle (fêtes de fin d'année)"
    assert not calendar.is_open(at("2026-12-24T10:00"))


def test_next_opening_skips_lunch_weekend_holidays_and_closures(calendar):
    assert calendar.next_opening(at("2026-03-03T12:10")) == at("2026-03-03T13:30")
    assert calendar.next_opening(at("2026-03-07T12:30")) == at("2026-03-09T08:30")  # Sat -> Mon
    assert calendar.next_opening(at("2026-04-30T18:00")) == at("2026-05-02T09:00")  # 1 May
    assert calendar.next_opening(at("2026-12-23T18:00")) == at("2026-12-28T08:30")  # 24-26 Dec closed, 27 Sunday


def test_next_opening_in_french(calendar):
    now = at("2026-03-03T12:10")
    assert describe_opening(calendar.next_opening(now), now) == "aujourd'hui à 13 h 30"
    evening = at("2026-03-05T18:00")  # Thursday
    assert describe_opening(calendar.next_opening(evening), evening) == "demain, vendredi 6 mars, à 8 h 30"
    saturday = at("2026-03-07T12:30")
    assert describe_opening(calendar.next_opening(saturday), saturday) == "le lundi 9 mars à 8 h 30"
    assert describe_opening(None, now) == "à une date qui n'est pas encore connue"


def test_a_commune_closed_for_good_has_no_next_opening():
    facts = {"nom": "X", "mairie": {"adresse": "a", "telephone": "1"}, "horaires": {}}
    calendar = OpeningCalendar(Commune.from_dict(facts))
    assert calendar.next_opening(at("2026-03-03T10:00")) is None


def test_references_are_short_and_unambiguous():
    references = {new_reference() for _ in range(2000)}
    assert len(references) > 1990
    for reference in references:
        assert PATTERN.match(reference) and len(reference) == 8
    assert not set("01OILUV") & set(ALPHABET)


@pytest.mark.parametrize(("typed", "expected"), [
    ("RAP-7K2P", "RAP-7K2P"), ("rap 7k2p", "RAP-7K2P"), ("7K2P", "RAP-7K2P"), ("RAP7K2P", "RAP-7K2P"),
    ("RAP-0000", None), ("hello", None), ("", None),
])
def test_normalise_reference(typed, expected):
    assert normalise_reference(typed) == expected
