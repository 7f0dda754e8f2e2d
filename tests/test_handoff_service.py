"""The handoff's state on both database backends: escalations, the queue, atomic claims,
transfers, expiry, tickets and callbacks, migrations next to Rasa's tracker store."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from sqlalchemy import inspect, update

from bot.console.accounts import Accounts
from bot.db import Agent, Base, Escalation, get_engine, session_scope, utcnow
from bot.db.migrate import current, upgrade
from bot.handoff.service import EXPIRED, HandoffService
from bot.settings import get_settings
from tests.handoff_support import PASSWORD, database_url

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path):
    with database_url(request.param, tmp_path) as value:
        upgrade(value)
        yield value


@pytest.fixture
def service(url, monkeypatch) -> HandoffService:
    monkeypatch.setenv("GUICHET_NOW", "2026-03-03T10:00")  # a Tuesday morning: open
    settings = dataclasses.replace(get_settings(), database_url=url, handoff_queue_timeout=60.0)
    return HandoffService(url, settings)


def agent(url: str, name: str, online: bool = True) -> int:
    agent_id = Accounts(url).create(name, name.title(), PASSWORD)
    if online:
        Accounts(url).set_presence(agent_id, "online")
    return agent_id


def test_tables_are_prefixed_and_never_clash_with_rasas_events(url):
    assert all(name.startswith("guichet_") for name in Base.metadata.tables)
    assert "events" not in Base.metadata.tables
    assert current(url) is not None
    upgrade(url)  # idempotent
    tables = set(inspect(get_engine(url)).get_table_names())
    assert {"guichet_escalations", "guichet_agents", "guichet_tickets", "guichet_alembic_version"} <= tables


def test_migrations_share_the_file_with_rasas_tracker_store(tmp_path):
    from rasa.core.tracker_store import SQLTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    path = tmp_path / "guichet.db"
    store = SQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(path))
    upgrade(f"sqlite:///{path}")
    tracker = DialogueStateTracker.from_events("c1", [UserUttered("bonjour")])
    import asyncio

    asyncio.run(store.save(tracker))
    assert asyncio.run(store.retrieve("c1")).latest_message.text == "bonjour"
    assert "events" in inspect(get_engine(f"sqlite:///{path}")).get_table_names()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_models_tables(backend, tmp_path):
    """A model changed without its migration (or the reverse) fails here, not in production."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import bot.db.faq_models
    import bot.db.outreach_models
    import bot.db.tickets  # noqa: F401 - every model on Base.metadata

    with database_url(backend, tmp_path) as url:
        upgrade(url)
        with get_engine(url).connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if not (d[0] == "remove_table" and d[1].name == "guichet_alembic_version")] == []


def test_escalation_queue_positions_and_wait(service, url):
    agent(url, "marie")
    assert service.availability().live
    first = service.escalate("c1", "messenger", "request", "je veux un agent")
    second = service.escalate("c2", "api", "misunderstanding")
    assert (first.position, second.position) == (1, 2)
    assert first.created and second.expected_wait_minutes >= first.expected_wait_minutes >= 1
    again = service.escalate("c1", "messenger", "request")
    assert again.escalation_id == first.escalation_id and not again.created
    assert [e.conversation_id for e in service.queue()] == ["c1", "c2"]


def test_no_agent_online_means_no_live_handoff(service, url):
    agent(url, "absent", online=False)
    availability = service.availability()
    assert availability.is_open and availability.agents_online == 0 and not availability.live
    stale = agent(url, "stale")
    with session_scope(url) as s:
        s.execute(update(Agent).where(Agent.id == stale).values(last_seen_at=utcnow().replace(year=2020)))
    assert not service.availability().live


def test_closed_town_hall_is_never_live_even_with_agents(url, monkeypatch):
    agent(url, "marie")
    monkeypatch.setenv("GUICHET_NOW", "2026-05-01T10:00")  # 1 May
    availability = HandoffService(url).availability()
    assert not availability.live and availability.closed_reason.startswith("jour férié")
    assert availability.next_opening == "demain, samedi 2 mai, à 9 h"


def test_concurrent_claims_have_exactly_one_winner(service, url):
    agents = [agent(url, f"agent{i}") for i in range(8)]
    for round_ in range(5):
        escalation = service.escalate(f"race-{round_}", "messenger", "request").escalation_id
        barrier = threading.Barrier(len(agents))
        wins: list[int] = []

        def claim(agent_id: int, escalation_id: int = escalation, barrier: threading.Barrier = barrier,
                  wins: list[int] = wins) -> None:
            barrier.wait()
            if service.claim(escalation_id, agent_id):
                wins.append(agent_id)

        threads = [threading.Thread(target=claim, args=(a,)) for a in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        assert service.get(escalation).claimed_by == wins[0]


def test_transfer_close_and_hand_back_only_by_the_agent_who_has_it(service, url):
    marie, paul = agent(url, "marie"), agent(url, "paul")
    escalation = service.escalate("c1", "messenger", "request").escalation_id
    assert service.claim(escalation, marie)
    assert not service.transfer(escalation, paul, marie)  # Paul does not have it
    assert service.transfer(escalation, marie, paul)
    assert service.get(escalation).claimed_by == paul
    assert service.transfer(escalation, paul, None)  # back to the queue
    assert service.get(escalation).status == "queued"
    assert service.claim(escalation, marie)
    assert not service.end(escalation, paul, "closed", "resolu")
    assert service.end(escalation, marie, "closed", "resolu", "réponse donnée")
    ended = service.get(escalation)
    assert (ended.status, ended.outcome, ended.resumed_at) == ("closed", "resolu", None)
    assert [e.id for e in service.pending_resumes()] == [escalation]
    assert service.take_resume(escalation) and not service.take_resume(escalation)
    assert service.pending_resumes() == []
    # The conversation can be escalated again later.
    assert service.escalate("c1", "messenger", "request").created


def test_citizen_cancel_and_expiry(service, url):
    service.escalate("c1", "messenger", "request")
    cancelled = service.cancel_by_citizen("c1")
    assert cancelled.status == "returned" and service.cancel_by_citizen("c1") is None
    old = service.escalate("c2", "messenger", "request").escalation_id
    fresh = service.escalate("c3", "messenger", "request").escalation_id
    with session_scope(url) as s:
        s.execute(update(Escalation).where(Escalation.id == old)
                  .values(created_at=utcnow().replace(microsecond=0) - __import__("datetime").timedelta(seconds=120)))
    expired = service.expire_due()
    assert [e.id for e in expired] == [old] and expired[0].outcome == EXPIRED
    assert service.expire_due() == []
    assert service.get(fresh).status == "queued"


def test_tickets_references_and_callbacks(service):
    references = {service.open_ticket(f"c{i}", "api", "request", "bonjour").reference for i in range(30)}
    assert len(references) == 30
    ticket = service.open_ticket("c1", "messenger", "request", "Mon problème")
    request = service.add_callback(ticket, "phone", "0612345678")
    assert request.consent and request.contact == "0612345678"
    assert service.ticket(ticket.reference).id == ticket.id
    open_tickets = dict((t.reference, c) for t, c in service.open_tickets())
    assert open_tickets[ticket.reference][0].contact == "0612345678"
    marie = agent(service.url, "marie")
    assert service.close_ticket(ticket.id, marie) and not service.close_ticket(ticket.id, marie)
    assert ticket.reference not in dict((t.reference, c) for t, c in service.open_tickets())


def test_counter_is_persistent(service):
    assert service.read_counter("cursor") is None
    service.write_counter("cursor", 42)
    service.write_counter("cursor", 43)
    assert HandoffService(service.url).read_counter("cursor") == 43


def test_queue_version_changes_with_any_change(service, url):
    before = service.queue_version()
    escalation = service.escalate("c1", "messenger", "request").escalation_id
    middle = service.queue_version()
    time.sleep(0.01)
    service.claim(escalation, agent(url, "marie"))
    assert before != middle != service.queue_version()


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_first_use_migrates_once(backend, tmp_path):
    """The action server runs actions in threads: the first ones migrate at the same time."""
    from bot.handoff.service import get_service

    with database_url(backend, tmp_path) as fresh:
        settings = dataclasses.replace(get_settings(), database_url=fresh)
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def first_use() -> None:
            barrier.wait()
            try:
                get_service(settings).queue()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert current(fresh) is not None
