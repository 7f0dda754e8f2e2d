"""Reports, complaints and personal data without Rasa: references, reading answers, the
database service (SQLite and PostgreSQL), CSV, erasure, retention, log masking."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot.db import CallbackRequest, Escalation, Note, Ticket, session_scope, utcnow
from bot.db.migrate import upgrade
from bot.db.tickets import CitizenRequest, ErasureRequest, RequestNotification
from bot.handoff.tracker_feed import EVENTS
from bot.privacy import data as privacy
from bot.privacy.masking import PersonalDataFilter, mask
from bot.privacy.notice import is_first_contact, retention_text
from bot.reports import catalog
from bot.reports.references import find_references, new_reference
from bot.reports.service import Filters, NewRequest, RequestError, RequestService
from tests.handoff_support import database_url

PSID = "7712345678901234"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path):
    with database_url(request.param, tmp_path) as value:
        upgrade(value)
        EVENTS.create(__import__("bot.db", fromlist=["get_engine"]).get_engine(value), checkfirst=True)
        yield value


@pytest.fixture
def agent(url) -> int:
    from bot.console.accounts import Accounts

    return Accounts(url).create("agent", "Agent", "un-mot-de-passe-solide")


def add_events(url: str, sender: str, texts: list[str], at: float | None = None) -> None:
    from bot.db import get_engine

    stamp = at if at is not None else utcnow().replace(tzinfo=dt.timezone.utc).timestamp()
    with get_engine(url).begin() as connection:
        for i, text in enumerate(texts):
            kind = "user" if i % 2 == 0 else "bot"
            connection.execute(insert(EVENTS).values(
                sender_id=sender, type_name=kind, timestamp=stamp + i, intent_name=None, action_name=None,
                data=json.dumps({"event": kind, "text": text, "timestamp": stamp + i, "input_channel": "messenger"}),
            ))


def report(conversation: str | None = PSID, **overrides) -> NewRequest:
    values = dict(
        kind="report", category="eclairage", description="Le lampadaire devant le 3 rue Haute est éteint",
        conversation_id=conversation, channel="messenger", place="3 rue Haute", latitude=47.59, longitude=1.33,
        photos=({"type": "image", "url": "https://cdn.example/p.jpg"},), contact_kind="phone",
        contact="0612345678", consent=True, due_days=10,
    )
    values.update(overrides)
    return NewRequest(**values)


# References and answers ---------------------------------------------------------------------------
def test_references_are_short_unambiguous_and_found_in_what_citizens_type():
    reference = new_reference("SIG-")
    assert len(reference) == 8 and not set(reference[4:]) & set("01OILUV")
    assert find_references("ou en est sig 7k2p ?? et REC-4MZ9 / rap7k2p") == ["SIG-7K2P", "REC-4MZ9", "RAP-7K2P"]
    assert find_references("SIG-0000 XSIG-7K2P SIG-7K2PX") == []  # 0 is not in the alphabet; not a word


@pytest.mark.parametrize(("typed", "code"), [
    ("Éclairage", "eclairage"), ("eclairage", "eclairage"), ("2", "eclairage"), ("le lampadaire", "eclairage"),
    ("depot sauvage", "depot_sauvage"), ("Dépôt sauvage", "depot_sauvage"), ("ESPACES VERTS", "espaces_verts"),
    ("une branche tombée", "espaces_verts"), ("Autre", "autre"), ("voirie", "voirie"), ("zzz", None), ("", None),
])
def test_report_categories_read_typos_accents_and_numbers(typed, code):
    assert catalog.report_category(typed) == code


def test_complaint_subjects():
    assert catalog.complaint_subject("Accueil de la mairie") == "accueil"
    assert catalog.complaint_subject("urbanisme") == "urbanisme"
    assert catalog.complaint_subject("la cantine de mon fils") == "ecole"


# The service -----------------------------------------------------------------------------------------
def test_a_request_gets_a_reference_its_history_and_a_deadline(url):
    service = RequestService(url)
    created = service.create(report())
    assert created.reference.startswith("SIG-") and created.status == "new"
    assert created.due_at is not None and (created.due_at - created.created_at).days == 10
    assert service.by_reference(created.reference.lower()).id == created.id
    complaint = service.create(report(kind="complaint", category="accueil", contact=None, consent=False))
    assert complaint.reference.startswith("REC-") and complaint.contact is None
    assert [h.kind for h in service.history(created.id)] == ["created"]
    assert [r.reference for r in service.for_conversation(PSID)] == [complaint.reference, created.reference]


def test_contact_is_kept_only_with_consent(url):
    service = RequestService(url)
    without = service.create(report(consent=False))
    assert without.contact is None and without.contact_kind is None and without.consent_at is None


def test_status_change_is_atomic_and_queues_the_citizens_message(url, agent):
    service = RequestService(url)
    created = service.create(report())
    notification = service.change_status(created.id, "new", "in_progress", agent, "Équipe prévue mardi", "texte")
    assert notification.status == "pending" and notification.conversation_id == PSID
    with pytest.raises(RequestError):  # the second agent saw "new" too
        service.change_status(created.id, "new", "resolved", agent, "", "texte")
    with pytest.raises(RequestError):
        service.change_status(created.id, "in_progress", "in_progress", agent, "", "texte")
    assert service.get(created.id).status == "in_progress"
    assert [(h.kind, h.old_value, h.new_value, h.comment) for h in service.history(created.id)][-1] == (
        "status", "new", "in_progress", "Équipe prévue mardi")


def test_notifications_are_claimed_once_and_failed_ones_retried_later(url, agent):
    service = RequestService(url)
    created = service.create(report())
    notification = service.change_status(created.id, "new", "in_progress", agent, "", "texte")
    [due] = service.due_notifications()
    assert service.take_notification(due) and not service.take_notification(due)
    service.record_delivery(due.id, "failed", "rasa_unreachable", "down")
    assert service.due_notifications() == []  # its retry is not due yet
    again = service.notification(notification.id)
    assert again.status == "failed" and again.attempts == 1 and again.next_try_at > utcnow()
    service.record_delivery(due.id, "not_delivered", "window_closed", "24 h")
    assert service.notification(notification.id).reason == "window_closed"


def test_assignment_is_recorded(url, agent):
    service = RequestService(url)
    created = service.create(report())
    assert service.assign(created.id, agent, agent)
    assert service.get(created.id).assigned_to == agent
    assert service.search(Filters(assigned=str(agent)))[0].id == created.id
    assert service.assign(created.id, None, agent) and service.get(created.id).assigned_to is None


def test_filters_and_csv_export(url):
    service = RequestService(url)
    first = service.create(report(description="=HYPERLINK(\"http://evil\")"))
    service.create(report(kind="complaint", category="urbanisme"))
    assert [r.id for r in service.search(Filters(kind="report"))] == [first.id]
    assert [r.id for r in service.search(Filters(category="eclairage", status="new"))] == [first.id]
    assert service.search(Filters(since=dt.date.today() + dt.timedelta(days=1))) == []
    assert len(service.search(Filters(until=dt.date.today()))) == 2
    filters = Filters.from_query({"status": "bogus", "since": "2026-13-40", "kind": "report", "reference": "sig"})
    assert filters.status == "" and filters.kind == "report" and filters.errors and filters.reference == "SIG"
    text = service.csv_export(service.search(Filters()), {}, lambda d, with_time=True: d.isoformat() if d else "")
    assert text.startswith("\ufeffRéférence;Type;")
    assert "'=HYPERLINK" in text and ";=HYPERLINK" not in text  # no formula injection
    assert "Éclairage" in text and "Réclamation" in text


# Personal data --------------------------------------------------------------------------------------
def test_export_gathers_messages_requests_and_handoff_data(url):
    add_events(url, PSID, ["bonjour", "Bonjour 👋", "mon numéro 06 12 34 56 78", "Merci"])
    RequestService(url).create(report())
    with session_scope(url) as s:
        ticket = Ticket(reference="RAP-7K2P", conversation_id=PSID, channel="messenger", reason="callback", summary="rappel")
        s.add(ticket)
        s.flush()
        s.add(CallbackRequest(ticket_id=ticket.id, contact_kind="phone", contact="0612345678", consent=True))
    data = privacy.export_conversation(url, PSID)
    assert [m["text"] for m in data["messages"]] == ["bonjour", "Bonjour 👋", "mon numéro 06 12 34 56 78", "Merci"]
    assert data["requests"][0]["contact"] == "0612345678" and data["requests"][0]["category"] == "Éclairage"
    assert data["handoff"]["callbacks"][0]["contact"] == "0612345678"
    json.dumps(data)  # JSON-ready


def test_erasure_anonymises_requests_deletes_contacts_and_later_the_events(url, agent):
    add_events(url, PSID, ["je suis au 06 12 34 56 78", "ok"])
    add_events(url, "someone-else", ["bonjour", "Bonjour"])
    service = RequestService(url)
    created = service.create(report(description="Appelez-moi au 06 12 34 56 78 ou paul@example.fr"))
    service.change_status(created.id, "new", "in_progress", agent, "", "texte")
    with session_scope(url) as s:
        escalation = Escalation(conversation_id=PSID, channel="messenger", reason="request",
                                reason_detail="mon numéro 0612345678", status="queued")
        s.add(escalation)
        s.flush()
        s.add(Note(escalation_id=escalation.id, agent_id=agent, text="habite rue Haute"))
        ticket = Ticket(reference="RAP-8K2P", conversation_id=PSID, channel="messenger", reason="callback",
                        summary="rappelez-moi", escalation_id=escalation.id)
        s.add(ticket)
        s.flush()
        s.add(CallbackRequest(ticket_id=ticket.id, contact_kind="phone", contact="0612345678", consent=True))

    privacy.request_erasure(url, PSID, "messenger", grace_seconds=3600)
    with session_scope(url) as s:
        request = s.get(CitizenRequest, created.id)
        assert request.conversation_id is None and request.contact is None and request.photos == "[]"
        assert "0612345678" not in request.description.replace(" ", "") and "paul@example.fr" not in request.description
        assert request.category == "eclairage" and request.place == "3 rue Haute"  # kept for the commune
        assert s.execute(select(CallbackRequest)).scalars().all() == []
        assert s.execute(select(Note)).scalars().all() == []
        escalation = s.execute(select(Escalation)).scalar_one()
        assert escalation.conversation_id != PSID and escalation.reason_detail == "" and escalation.status == "closed"
        assert s.execute(select(Ticket)).scalar_one().summary == ""
        assert s.execute(select(RequestNotification)).scalar_one().conversation_id is None
    assert privacy.process_due_erasures(url) == 0  # Rasa may still be saving this turn
    later = utcnow() + dt.timedelta(hours=2)
    assert privacy.process_due_erasures(url, now=later) == 1
    from bot.db import get_engine

    with get_engine(url).connect() as connection:
        senders = {row[0] for row in connection.execute(select(EVENTS.c.sender_id))}
    assert senders == {"someone-else"}
    with session_scope(url) as s:
        erasure = s.execute(select(ErasureRequest)).scalar_one()
        assert erasure.status == "done" and erasure.conversation_key.startswith("sha256:") and erasure.events_deleted == 2
    assert PSID not in json.dumps(privacy.export_conversation(url, PSID)["requests"])


def test_erasure_unlinks_votes_but_keeps_them_counted(url):
    from bot.outreach.polls import RECORDED, Polls

    polls = Polls(url)
    poll = polls.create("Quel nom pour la médiathèque ?", ["Victor Hugo", "Colette"], utcnow() + dt.timedelta(days=7))
    assert polls.open(poll.id)
    assert polls.vote(poll.id, 1, "whatsapp", PSID)[0] == RECORDED
    assert polls.vote(poll.id, 2, "messenger", "someone-else")[0] == RECORDED
    counts = privacy.erase_project_data(url, PSID)
    assert counts["votes"] == 1
    assert not polls.has_voted(poll.id, "whatsapp", PSID)  # the pseudonym leads nowhere now
    assert polls.has_voted(poll.id, "messenger", "someone-else")
    assert polls.results(poll.id).total == 2  # the consultation's result does not change


def test_retention_purge_deletes_old_conversations_and_keeps_recent_ones(url):
    old = (utcnow() - dt.timedelta(days=400)).replace(tzinfo=dt.timezone.utc).timestamp()
    add_events(url, "old-citizen", ["bonjour", "Bonjour"], at=old)
    add_events(url, "recent-citizen", ["bonjour", "Bonjour"])
    service = RequestService(url)
    kept = service.create(report(conversation="old-citizen"))
    assert privacy.purge_expired(url, 365, dry_run=True)["conversations"] == 1
    counts = privacy.purge_expired(url, 365)
    assert counts["conversations"] == 1 and counts["events"] == 2
    assert privacy.expired_conversations(url, 365) == []
    assert service.get(kept.id).anonymised_at is not None and service.get(kept.id).contact is None
    assert not is_first_contact(url, "recent-citizen") and is_first_contact(url, "old-citizen")


def test_the_purge_runs_once_per_interval_whatever_the_number_of_consoles(url):
    from bot.privacy.jobs import claim_purge

    assert claim_purge(url, 3600, now=1_000_000)
    assert not claim_purge(url, 3600, now=1_000_100)
    assert claim_purge(url, 3600, now=1_004_000)


def test_retention_in_words():
    assert retention_text(365) == "un an" and retention_text(730) == "2 ans"
    assert retention_text(90) == "3 mois" and retention_text(10) == "10 jours"


# Logs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "masked"), [
    ("rappel au 06 12 34 56 78 svp", "rappel au [tél. …78] svp"),
    ("0612345678", "[tél. …78]"), ("+33 6 12 34 56 78", "[tél. …78]"), ("+33612345678", "[tél. …78]"),
    ("0033 6 12 34 56 78", "[tél. …78]"), ("06.12.34.56.78", "[tél. …78]"),
    ("wa_id 33612345678 failed", "wa_id [tél. …78] failed"),
    ("écrire à jean.dupont+mairie@example.fr.", "écrire à [e-mail]."),
    ("event 1764181234567 psid 7654321098765432 port 5005", "event 1764181234567 psid 7654321098765432 port 5005"),
])
def test_phone_numbers_and_emails_are_masked(raw, masked):
    assert mask(raw) == masked


def test_every_log_record_of_the_process_is_masked(caplog):
    import bot  # noqa: F401 - installs the masking

    caplog.set_level(logging.INFO)
    logger = logging.getLogger("guichet.test")
    logger.info("callback for %s (%s)", "06 12 34 56 78", "marie@example.fr")
    try:
        raise ValueError("bad contact 0612345678")
    except ValueError:
        logger.exception("could not store %s", "marie@example.fr")
    text = caplog.text
    assert "06 12 34 56 78" not in text and "0612345678" not in text and "marie@example.fr" not in text
    assert "[tél. …78]" in text and "[e-mail]" in text
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("+33612345678",), None)
    assert PersonalDataFilter().filter(record) and record.getMessage() == "to [tél. …78]"
