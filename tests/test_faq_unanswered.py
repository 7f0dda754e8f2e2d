"""Unanswered questions and the dashboard, read from a tracker store written by Rasa's own
SQLTrackerStore (the events a running assistant records), then from the real stack."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    ActiveLoop,
    BotUttered,
    ConversationPaused,
    ConversationResumed,
    Event,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.engine import make_url

from bot.db.migrate import upgrade
from bot.faq import ratings
from bot.faq.conversations import TrackerReader
from bot.faq.dashboard import compute, dashboard
from bot.faq.editing import ValidationFailed
from bot.faq.unanswered import UnansweredQuestions
from bot.settings import PROJECT_ROOT
from tests.faq_support import FaqCopy, faq_copy
from tests.handoff_support import database_url

DAY = dt.datetime(2026, 3, 3, 9, 0, tzinfo=dt.timezone.utc)


def run_sync(coroutine) -> None:  # noqa: ANN001
    """Runs a coroutine, also from a thread that already runs an event loop (Playwright)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coroutine)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


class Conversations:
    """Writes conversations with Rasa's SQLTrackerStore, one tracker per citizen."""

    def __init__(self, url: str) -> None:
        self.domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            self.store = SQLTrackerStore(domain=self.domain, dialect="sqlite", db=parsed.database)
        else:  # the same options as endpoints.yml's tracker_store for PostgreSQL
            self.store = SQLTrackerStore(domain=self.domain, dialect="postgresql", host=parsed.host, port=parsed.port,
                                         db=parsed.database, username=parsed.username, password=parsed.password,
                                         query=dict(parsed.query))
        self.clock = DAY.timestamp()
        self.trackers: dict[str, DialogueStateTracker] = {}

    def tick(self, seconds: float = 5) -> float:
        self.clock += seconds
        return self.clock

    def at(self, when: dt.datetime) -> None:
        self.clock = when.timestamp()

    def _save(self, sender: str, events: list[Event]) -> None:
        tracker = self.trackers.get(sender) or DialogueStateTracker(sender, self.domain.slots)
        for event in events:
            tracker.update(event)
        self.trackers[sender] = tracker
        run_sync(self.store.save(tracker))

    def user(self, sender: str, text: str, intent: str, confidence: float = 0.9, channel: str = "messenger",
             ranking: tuple[tuple[str, float], ...] = ()) -> list[Event]:
        parse = {"intent": {"name": intent, "confidence": confidence}, "entities": [], "text": text,
                 "response_selector": {"faq": {"ranking": [{"intent_response_key": f"faq/{t}", "confidence": c}
                                                           for t, c in ranking]}}}
        return [UserUttered(text, parse["intent"], [], parse, timestamp=self.tick(), input_channel=channel)]

    def action(self, name: str) -> ActionExecuted:
        return ActionExecuted(name, timestamp=self.tick(1))

    def answered(self, sender: str, text: str, topic: str, channel: str = "messenger") -> None:
        self._save(sender, [*self.user(sender, text, "faq", channel=channel, ranking=((topic, 0.9),)),
                            self.action("action_faq"), BotUttered("…", timestamp=self.tick(1)),
                            SlotSet("fallback_count", 0.0, timestamp=self.tick(0)),
                            SlotSet("last_faq_topic", topic, timestamp=self.tick(0)),
                            self.action("action_listen")])

    def missed(self, sender: str, text: str, channel: str = "messenger", intent: str = "nlu_fallback",
               ranking: tuple[tuple[str, float], ...] = ()) -> None:
        """Not understood: suggestions offered (Rasa's fallback rule)."""
        self._save(sender, [*self.user(sender, text, intent, 0.3, channel, ranking),
                            self.action("action_guichet_fallback"), BotUttered("Vouliez-vous dire…", timestamp=self.tick(1)),
                            SlotSet("fallback_count", 1.0, timestamp=self.tick(0)), self.action("action_listen")])

    def asks_for_agent(self, sender: str, text: str = "je veux parler à quelqu'un", channel: str = "messenger",
                       ticket: bool = False) -> None:
        events = [*self.user(sender, text, "human_handoff", channel=channel), self.action("action_human_handoff"),
                  BotUttered("Je vous mets en relation…", timestamp=self.tick(1))]
        if ticket:
            events += [SlotSet("handoff_reference", "RAP-7K2P", timestamp=self.tick(0)), self.action("action_listen")]
        else:
            events += [SlotSet("fallback_count", 0.0, timestamp=self.tick(0)), ConversationPaused(timestamp=self.tick(0))]
        self._save(sender, events)

    def to_agent(self, sender: str, text: str) -> None:
        self._save(sender, self.user(sender, text, "out_of_scope"))

    def resumed(self, sender: str) -> None:
        self._save(sender, [ConversationResumed(timestamp=self.tick()), self.action("action_listen")])

    def callback_form(self, sender: str, phone: str) -> None:
        self._save(sender, [ActiveLoop("callback_form", timestamp=self.tick()),
                            *self.user(sender, phone, "out_of_scope"), self.action("callback_form"),
                            ActiveLoop(None, timestamp=self.tick()), self.action("action_listen")])


@pytest.fixture(params=["sqlite", "postgresql"])
def faq(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaqCopy]:
    with database_url(request.param, tmp_path) as url:
        yield faq_copy(tmp_path, url)


@pytest.fixture
def talks(faq: FaqCopy) -> Conversations:
    # The tracker store and the project's tables share one database, as in production.
    return Conversations(faq.url)


def fill(talks: Conversations) -> None:
    talks.missed("c1", "horaires de la piscine", ranking=(("sport", 0.3),))
    talks.missed("c2", "la piscine est ouverte quand ?", channel="whatsapp", ranking=(("sport", 0.25),))
    talks.missed("c3", "Horaires piscine municipale", channel="telegram")
    talks.missed("c3", "horaires de la piscine")  # same question again, another conversation turn
    talks.missed("c4", "où garer mon camping car", intent="faq", ranking=(("stationnement", 0.1),))
    talks.missed("c5", "stationnement camping-car")
    talks.answered("c6", "j'ai perdu ma carte d'identité", "cni")
    # Asked a question, then a person: the question is what the editor needs to see.
    talks.answered("c7", "bonjour", "horaires_mairie")
    talks.missed("c7", "mon voisin fait du bruit la nuit", channel="messenger")
    talks.asks_for_agent("c7")
    talks.to_agent("c7", "allo ? vous êtes là ?")  # to the agent: not for the bot
    talks.resumed("c7")
    talks.answered("c8", "horaires mairie", "horaires_mairie", channel="whatsapp")
    talks.to_agent("c8", "puis-je venir avec mon chien au conseil municipal")  # not understood…
    talks.asks_for_agent("c8", ticket=True)  # …then a person asked for: a ticket
    talks.callback_form("c8", "06 12 34 56 78")  # a phone number in the callback form: never a question
    talks.answered("c9", "horaires mairie", "horaires_mairie", channel="telegram")
    talks.asks_for_agent("c9")  # the previous question was answered: asked for a person anyway


def test_unanswered_questions_are_found_and_grouped(faq: FaqCopy, talks: Conversations):
    fill(talks)
    unanswered = UnansweredQuestions(faq.url, faq.editor)
    questions = unanswered.questions(now=DAY + dt.timedelta(hours=1))
    texts = {q.text: q.kind for q in questions}
    assert texts == {
        "horaires de la piscine": "fallback", "la piscine est ouverte quand ?": "fallback",
        "Horaires piscine municipale": "fallback", "où garer mon camping car": "fallback",
        "stationnement camping-car": "fallback", "mon voisin fait du bruit la nuit": "fallback",
        "puis-je venir avec mon chien au conseil municipal": "handoff",
    }
    groups = unanswered.groups(now=DAY + dt.timedelta(hours=1))
    piscine = groups[0]
    assert piscine.count == 4 and piscine.label == "horaires de la piscine"
    assert sorted(piscine.texts) == sorted(["horaires de la piscine", "la piscine est ouverte quand ?",
                                            "Horaires piscine municipale"])
    assert piscine.channels == {"messenger": 2, "whatsapp": 1, "telegram": 1}
    assert piscine.suggested_topic == "sport"
    camping = next(g for g in groups if "où garer mon camping car" in g.texts)
    assert sorted(camping.texts) == ["où garer mon camping car", "stationnement camping-car"]
    assert sum(g.count for g in groups) == 8


def test_editor_decisions_are_kept_until_the_question_comes_back(faq: FaqCopy, talks: Conversations):
    fill(talks)
    unanswered = UnansweredQuestions(faq.url, faq.editor)
    now = DAY + dt.timedelta(hours=1)
    piscine = unanswered.groups(now=now)[0]
    assert unanswered.dismiss(piscine.texts, "alice") == 3
    assert all("piscine" not in " ".join(g.texts) for g in unanswered.groups(now=now))
    # A later occurrence shows again.
    talks.missed("c10", "la piscine est ouverte quand ?")
    later = unanswered.groups(now=now)
    assert [g.texts for g in later if "piscine" in " ".join(g.texts)] == [["la piscine est ouverte quand ?"]]

    camping = next(g for g in later if "stationnement camping-car" in g.texts)
    result = unanswered.add_to_topic(camping.texts, "stationnement", "alice")
    assert {"où garer mon camping car", "stationnement camping-car"} <= set(result.topic.examples)
    assert all("stationnement camping-car" not in g.texts for g in unanswered.groups(now=now))
    # A question that would conflict with another topic is refused: nothing is marked.
    with pytest.raises(ValidationFailed):
        unanswered.add_to_topic(["horaires mairie"], "contact_mairie", "alice")


def test_new_topic_from_unanswered_questions(faq: FaqCopy, talks: Conversations):
    fill(talks)
    unanswered = UnansweredQuestions(faq.url, faq.editor)
    group = next(g for g in unanswered.groups(now=DAY) if "mon voisin fait du bruit la nuit" in g.texts)
    draft = unanswered.new_topic_draft(group.texts)
    assert draft["examples"] == ["mon voisin fait du bruit la nuit"]
    assert unanswered.topic_created(group.texts, "bruit_voisinage", "alice") == 1
    assert all("mon voisin fait du bruit la nuit" not in g.texts for g in unanswered.groups(now=DAY))


def test_dashboard_counts_per_day_channel_topic_and_rates(faq: FaqCopy, talks: Conversations):
    fill(talks)
    talks.at(DAY + dt.timedelta(days=1))
    talks.answered("d1", "carte identité perdue", "cni", channel="whatsapp")
    talks.answered("d2", "passeport", "passeport", channel="messenger")
    ratings.rate(faq.url, "c6", "cni", True, "messenger")
    ratings.rate(faq.url, "d1", "cni", False, "whatsapp")
    ratings.rate(faq.url, "d1", "cni", True, "whatsapp", comment="Merci")  # changed their mind
    ratings.rate(faq.url, "d2", "passeport", False, "messenger")
    board = dashboard(faq.url, days=7, now=(DAY + dt.timedelta(days=1, hours=2)).replace(tzinfo=None))
    days = {d["day"]: d for d in board.per_day}
    assert len(board.per_day) == 7
    first = days["2026-03-03"]
    # Citizens' messages to the bot: the 17 turns written by `fill`, minus the one to the agent.
    assert first["total"] == 16
    assert first["channels"] == {"messenger": 12, "whatsapp": 2, "telegram": 2}
    assert days["2026-03-04"] == {"day": "2026-03-04", "total": 2, "channels": {"whatsapp": 1, "messenger": 1}}
    assert board.conversations == 11
    assert dict(board.top_topics) == {"horaires_mairie": 3, "cni": 2, "passeport": 1}
    assert board.fallbacks == 7  # the 7 misses (the callback-form answer is not counted)
    assert board.handoffs == 3 and board.handoff_rate == round(3 / 11, 3)
    assert board.ratings["cni"].useful == 2 and board.ratings["cni"].not_useful == 0
    assert board.ratings["passeport"].useful_rate == 0.0
    assert board.useful_rate == round(2 / 3, 3)
    assert ratings.comments(faq.url, "cni")[0].comment == "Merci"
    assert board.as_dict()["top_topics"][0] == {"topic": "horaires_mairie", "count": 3}


def test_an_empty_database_gives_an_empty_dashboard(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    upgrade(url)
    assert TrackerReader(url).turns() == []
    board = compute([], dt.date(2026, 3, 1), dt.date(2026, 3, 3))
    assert board.fallback_rate is None and [d["total"] for d in board.per_day] == [0, 0, 0]
    assert UnansweredQuestions(url).groups() == []


@pytest.mark.slow
def test_unanswered_questions_of_the_running_assistant(stack, tmp_path: Path):
    """Questions the real assistant did not understand show up in the editor's list."""
    url = stack.env["GUICHET_DATABASE_URL"]
    upgrade(url)
    reader = TrackerReader(url)
    start = reader.last_event_id()
    citizen = f"unanswered-{uuid.uuid4().hex[:8]}"
    stack.say(citizen, "xqzv blorp wibble")
    stack.say(citizen, "j'ai perdu ma carte d'identité")
    questions = UnansweredQuestions(url).questions(include_reviewed=True)
    mine = [q for q in questions if q.conversation_id == citizen and q.event_id > start]
    assert [q.text for q in mine] == ["xqzv blorp wibble"]
    assert mine[0].kind == "fallback" and mine[0].channel == "api"
