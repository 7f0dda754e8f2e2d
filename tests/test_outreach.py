"""Alerts, crisis, rumours and consultations without Rasa: the services on a real SQLite
database, the broadcast worker against the local Graph API and WhatsApp simulators (the
citizens' past messages written straight into a tracker-store table)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from bot.broadcast.content import build
from bot.broadcast.service import BroadcastError, Broadcasts
from bot.broadcast.worker import Worker
from bot.channels import receipts
from bot.db import get_engine, session_scope, utcnow
from bot.db.migrate import current, downgrade, upgrade
from bot.db.outreach_models import Delivery
from bot.handoff.tracker_feed import EVENTS, _metadata
from bot.outreach.crisis import CrisisError, CrisisService
from bot.outreach.matching import best_match, strip_framing
from bot.outreach.polls import ALREADY_VOTED, CLOSED, RECORDED, PollError, Polls, choice_in_text
from bot.outreach.rumours import RumourError, Rumours
from bot.outreach.subscriptions import Subscriptions, topics_in
from bot.settings import get_settings
from tests.simulators.graph_api import Fault, GraphApiSimulator
from tests.simulators.whatsapp_cloud import Fault as WaFault
from tests.simulators.whatsapp_cloud import WhatsAppCloudSimulator

LATER = dt.timedelta(days=3)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'guichet.db'}"
    upgrade(url)
    _metadata.create_all(get_engine(url))  # Rasa's tracker store table, as Rasa creates it
    return url


def test_migration_goes_up_and_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    head = current(url)
    downgrade(url, "0001")
    assert current(url) == "0001"
    upgrade(url)
    assert current(url) == head


# Matching ------------------------------------------------------------------------------
RUMOURS = ["La piscine municipale va fermer définitivement", "La cantine scolaire devient payante en janvier",
           "Le marché du samedi est supprimé", "L'eau du robinet n'est plus potable"]


@pytest.mark.parametrize("question, expected", [
    ("cest vrai que la piscine ferme ?", 0),
    ("il parait que la cantine sera payante", 1),
    ("On m'a dit que le MARCHE du samedi c'est fini", 2),
    ("est-ce que l'eau du robinet est encore potable ???", 3),
])
def test_rumour_questions_match_their_statement(question, expected):
    found = best_match(question, RUMOURS, get_settings().rumour_min_similarity)
    assert found is not None and found.index == expected


@pytest.mark.parametrize("question", ["horaires de la piscine", "horaires piscine municipale", "tarif cantine scolaire",
                                      "la mairie va fermer ?", "bonjour", "c'est vrai ?", ""])
def test_unrelated_questions_match_no_rumour(question):
    assert best_match(question, RUMOURS, get_settings().rumour_min_similarity) is None


def test_framing_is_removed():
    assert strip_framing("C'est vrai que la piscine ferme ?") == "la piscine ferme"


def test_topics_named_in_a_message():
    assert topics_in("je veux être prévenu des travaux") == ["travaux"]
    assert topics_in("les infos sur la cantine et les écoles svp") == ["ecoles"]
    assert topics_in("alertes") == []


# Services ------------------------------------------------------------------------------
def test_subscriptions(url):
    subs = Subscriptions(url)
    assert subs.subscribe("messenger", "p1", ["travaux"]) == ["travaux"]
    assert subs.subscribe("messenger", "p1", ["ecoles", "travaux", "inconnu"]) == ["travaux", "ecoles"]
    assert subs.subscribe("whatsapp", "33600000001", ["tous"]) == ["crise", "travaux", "evenements", "ecoles"]
    assert [(r.channel, r.conversation_id) for r in subs.recipients(["travaux", "ecoles"])] == [
        ("messenger", "p1"), ("whatsapp", "33600000001")]
    assert subs.counts() == {"crise": 1, "travaux": 2, "evenements": 1, "ecoles": 2}
    assert subs.unsubscribe("messenger", "p1", ["travaux"]) == ["ecoles"]
    assert subs.unsubscribe("messenger", "p1") == []
    assert subs.topics_of("messenger", "p1") == []
    assert subs.forget("33600000001") == 1
    assert subs.recipients(["crise"]) == []


def test_crisis_validation_and_activity(url):
    service = CrisisService(url)
    with pytest.raises(CrisisError):
        service.create("Coupure", "message", "pas-un-lien", utcnow() + LATER)
    with pytest.raises(CrisisError):
        service.create("Coupure", "message", "https://mairie.example.fr", utcnow() - LATER)
    crisis = service.create("Coupure d'eau rue Pasteur", "L'eau est coupée jusqu'à 18 h.",
                            "https://mairie.example.fr/eau", utcnow() + LATER, "eau, robinet")
    active = service.active()
    assert active and active.id == crisis.id
    assert active.concerns("y a plus d'eau au robinet ??") and active.concerns("coupure rue pasteur")
    assert not active.concerns("horaires de la médiathèque")
    assert service.end(crisis.id) and service.active() is None and not service.end(crisis.id)


def test_rumours_published_only(url):
    rumours = Rumours(url)
    with pytest.raises(RumourError):
        rumours.save("La piscine va fermer", "peut-être", "Non.", "https://x.fr", dt.date(2026, 11, 2))
    draft = rumours.save("La piscine municipale va fermer", "faux", "Elle reste ouverte.",
                         "https://mairie.example.fr/piscine", dt.date(2026, 11, 20))
    assert rumours.match("c'est vrai que la piscine va fermer ?", 0.35) is None
    rumours.set_status(draft.id, "published")
    assert rumours.match("c'est vrai que la piscine va fermer ?", 0.35).id == draft.id


def test_polls_one_vote_per_citizen(url):
    polls = Polls(url)
    for choices in (["Oui"], ["a", "b", "c", "d", "e", "f"], ["Oui", "oui"]):
        with pytest.raises(PollError):
            polls.create("Question ?", choices, utcnow() + LATER)
    poll = polls.create("Quel nom pour la place ?", ["Place Simone Veil", "Place des Tilleuls"], utcnow() + LATER)
    assert polls.vote(poll.id, 1, "messenger", "p1")[0] == CLOSED  # still a draft
    assert polls.open(poll.id)
    assert polls.vote(poll.id, 2, "messenger", "p1")[0] == RECORDED
    assert polls.vote(poll.id, 1, "messenger", "p1")[0] == ALREADY_VOTED
    assert polls.vote(poll.id, 1, "whatsapp", "p1")[0] == RECORDED  # another channel, another voter
    assert polls.to_offer("messenger", "p1") is None and polls.to_offer("messenger", "p2").id == poll.id
    results = polls.results(poll.id)
    assert [(c.label, n) for c, n in results.counts] == [("Place Simone Veil", 1), ("Place des Tilleuls", 1)]
    assert results.total == 2 and results.percent(1) == 50
    assert choice_in_text(poll, "je vote pour la place des tilleuls").position == 2
    assert choice_in_text(poll, "la 1").position == 1 and choice_in_text(poll, "bof") is None
    assert polls.close(poll.id) and polls.vote(poll.id, 1, "telegram", "t1")[0] == CLOSED


def test_broadcast_is_queued_once_with_one_row_per_recipient(url):
    Subscriptions(url).subscribe("messenger", "p1", ["travaux", "ecoles"])
    Subscriptions(url).subscribe("whatsapp", "33600000001", ["ecoles"])
    Subscriptions(url).subscribe("telegram", "telegram-5", ["crise"])
    broadcasts = Broadcasts(url)
    with pytest.raises(BroadcastError):
        broadcasts.create("Titre", "x" * 641, ["travaux"])
    with pytest.raises(BroadcastError):
        broadcasts.create("Titre", "Texte", [])
    info = broadcasts.create("Rentrée", "Les écoles rouvrent lundi.", ["travaux", "ecoles"], "https://mairie.example.fr")
    assert broadcasts.queue(info.id) == 2
    with pytest.raises(BroadcastError):
        broadcasts.queue(info.id)
    with pytest.raises(IntegrityError), session_scope(url) as s:
        s.execute(insert(Delivery), [{"broadcast_id": info.id, "channel": "messenger", "recipient": "p1"}])
    assert broadcasts.report(info.id).count("pending") == 2
    assert broadcasts.cancel(info.id) == 2
    assert broadcasts.report(info.id).reasons["skipped"]["cancelled"] == 2


def test_broadcast_content_fits_a_template_parameter():
    from bot.broadcast.service import BroadcastInfo

    info = BroadcastInfo(1, "Tempête", "Restez chez vous.\n\nÉvitez   les routes.", "https://x.fr", ("crise",),
                         None, "draft", utcnow(), None, None)
    content = build(info)
    assert content.text.startswith("📢 Tempête\n") and "stop alertes" in content.text
    line = content.one_line()
    assert "\n" not in line and "    " not in line and line.endswith("https://x.fr")


# The worker ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulators():
    graph = GraphApiSimulator().start()
    wa = WhatsAppCloudSimulator(app_secret="s3cret", templates={("alerte_mairie", "fr"): 1}).start()
    yield graph, wa
    graph.stop()
    wa.stop()


def settings_for(url, graph, wa, **changes):
    env = {**graph.bot_env(), **wa.bot_env()}
    values = dict(
        database_url=url, messenger_page_token=env["GUICHET_MESSENGER_PAGE_TOKEN"],
        graph_api_url=graph.url, graph_timeout=2.0, whatsapp_access_token=wa.access_token,
        whatsapp_phone_number_id=wa.phone_number_id, whatsapp_api_url=wa.url, whatsapp_api_timeout=2.0,
        telegram_token="", broadcast_retry_base=0.05, broadcast_poll_interval=0.05)
    return dataclasses.replace(get_settings(), **{**values, **changes})


def wrote(url, conversation: str, channel: str, at: float) -> None:
    stamp = int(at) if channel == "whatsapp" else int(at * 1000)
    data = {"event": "user", "timestamp": at, "text": "bonjour", "input_channel": channel,
            "metadata": {channel: {"timestamp": stamp}}}
    with get_engine(url).begin() as connection:
        connection.execute(EVENTS.insert(), [{"sender_id": conversation, "type_name": "user", "timestamp": at,
                                              "intent_name": "greet", "data": json.dumps(data)}])


def run(worker: Worker) -> None:
    asyncio.run(worker.run(until_idle=True))


def test_worker_follows_each_platforms_rules_and_retries(url, simulators):
    graph, wa = simulators
    now = time.time()
    subs = Subscriptions(url)
    people = {f"10{i:014d}": now - (3600 if i < 3 else 3 * 86400) for i in range(6)}
    for psid, at in people.items():
        graph.note_user_message("messenger", psid, int(at * 1000))
        wrote(url, psid, "messenger", at)
        subs.subscribe("messenger", psid, ["travaux"])
    psids = list(people)
    token = graph.notifications.issue(psids[3], "guichet-alertes", "Alertes").token
    receipts.record_optin(url, psids[3], {"type": "notification_messages", "page_id": graph.page_id,
                                          "payload": "guichet-alertes", "notification_messages_token": token})
    numbers = {f"3361000{i:04d}": now - (600 if i < 2 else 2 * 86400) for i in range(4)}
    for number, at in numbers.items():
        wa.last_inbound[number] = at
        wrote(url, number, "whatsapp", at)
        subs.subscribe("whatsapp", number, ["travaux"])
    subs.subscribe("webchat", "web-1", ["travaux"])
    graph.inject(Fault("temporary", recipient=psids[0]),
                 Fault("custom", status=400, code=551, message="This person isn't available right now.",
                       recipient=psids[1]))
    wa.inject(WaFault(status=400, code=130429, to="33610000000"))
    broadcasts = Broadcasts(url)
    info = broadcasts.create("Travaux rue Pasteur", "Rue fermée lundi.", ["travaux"], "https://mairie.example.fr/t")
    broadcasts.queue(info.id)

    run(Worker(settings_for(url, graph, wa, whatsapp_alert_template="alerte_mairie")))

    report = broadcasts.report(info.id).as_dict()
    assert (report["sent"], report["failed"], report["skipped"]) == (7, 1, 3)
    assert report["reasons"] == {"failed": {"unavailable": 1},
                                 "skipped": {"window_closed_no_optin": 2, "channel_cannot_push": 1}}
    assert report["routes"] == {"standard": 4, "notification_token": 1, "template": 2}
    assert broadcasts.get(info.id).status == "done"
    assert [len(graph.sent_to(p)) for p in psids] == [1, 0, 1, 1, 0, 0]
    assert graph.sent_to(psids[3])[0].messaging_type is None  # the token replaces the window
    assert graph.sent_to(psids[0])[0].message["metadata"] == receipts.delivery_key(
        broadcasts.deliveries(info.id)[0].id)
    assert [[m["type"] for m in wa.messages_to(n)] for n in numbers] == [["text"], ["text"], ["template"], ["template"]]
    template = wa.messages_to("33610000002")[0]["template"]
    assert "\n" not in template["components"][0]["parameters"][0]["text"]


def test_whatsapp_without_template_is_skipped_with_its_reason(url, simulators):
    graph, wa = simulators
    wrote(url, "33611110000", "whatsapp", time.time() - 2 * 86400)
    Subscriptions(url).subscribe("whatsapp", "33611110000", ["crise"])
    broadcasts = Broadcasts(url)
    info = broadcasts.create("Tempête", "Restez chez vous.", ["crise"])
    broadcasts.queue(info.id)
    run(Worker(settings_for(url, graph, wa)))
    assert broadcasts.report(info.id).as_dict()["reasons"] == {"skipped": {"template_required": 1}}
    assert wa.messages_to("33611110000") == []


def test_transient_failures_stop_after_the_last_attempt(url, simulators):
    graph, wa = simulators
    psid = "1099999999999999"
    graph.note_user_message("messenger", psid, int(time.time() * 1000))
    wrote(url, psid, "messenger", time.time())
    Subscriptions(url).subscribe("messenger", psid, ["travaux"])
    graph.inject(Fault("server_error", count=3, recipient=psid))
    broadcasts = Broadcasts(url)
    info = broadcasts.create("Travaux", "Rue fermée.", ["travaux"])
    broadcasts.queue(info.id)
    run(Worker(settings_for(url, graph, wa, broadcast_max_attempts=3)))
    delivery = broadcasts.deliveries(info.id)[0]
    assert (delivery.status, delivery.reason, delivery.attempts) == ("failed", "temporary_error", 3)
    assert graph.sent_to(psid) == [] and len(graph.calls_to(psid)) == 3


def test_interrupted_deliveries_are_checked_against_receipts(url, simulators):
    """What a restarted worker does with deliveries a crash left `sending`."""
    graph, wa = simulators
    subs = Subscriptions(url)
    for channel, who in (("messenger", "m-echoed"), ("messenger", "m-lost"), ("whatsapp", "33622220000"),
                         ("telegram", "telegram-7"), ("whatsapp", "33622220001")):
        subs.subscribe(channel, who, ["evenements"])
    broadcasts = Broadcasts(url)
    info = broadcasts.create("Fête", "Samedi.", ["evenements"])
    broadcasts.queue(info.id)
    rows = {d.recipient: d.id for d in broadcasts.deliveries(info.id)}
    long_ago = utcnow() - dt.timedelta(minutes=10)
    with session_scope(url) as s:
        s.execute(update(Delivery).where(Delivery.broadcast_id == info.id)
                  .values(status="sending", claimed_at=long_ago, claimed_by="dead-worker", attempts=1))
    receipts.record_receipt(url, receipts.delivery_key(rows["m-echoed"]), "messenger", "echo", "m_1")
    receipts.record_receipt(url, receipts.delivery_key(rows["33622220000"]), "whatsapp", "sent", "wamid.1")
    receipts.record_receipt(url, receipts.delivery_key(rows["33622220001"]), "whatsapp", "failed", "wamid.2",
                            131026, "Message undeliverable")
    worker = Worker(settings_for(url, graph, wa, broadcast_stale_after=60))
    assert worker.reclaim_stale() == 5
    with session_scope(url) as s:
        state = {d.recipient: (d.status, d.reason) for d in
                 s.execute(select(Delivery).where(Delivery.broadcast_id == info.id)).scalars()}
    assert state == {
        "m-echoed": ("sent", None), "33622220000": ("sent", None),
        "m-lost": ("pending", "interrupted"),  # no proof it went out: sent again
        "telegram-7": ("failed", "interrupted"),  # no receipts on Telegram: never twice
        "33622220001": ("failed", "undeliverable"),
    }


def test_telegram_broadcast_any_time_until_the_citizen_blocks_the_bot(url, simulators):
    from tests.simulators.telegram_api import TelegramSimulator

    graph, wa = simulators
    telegram = TelegramSimulator().start()
    try:
        reader, blocker = telegram.chat(), telegram.chat()
        telegram.blocked.add(blocker)
        subs = Subscriptions(url)
        for chat in (reader, blocker, 4242):  # 4242: never talked to the bot
            subs.subscribe("telegram", f"telegram-{chat}", ["ecoles"])
        broadcasts = Broadcasts(url)
        info = broadcasts.create("Rentrée", "Les écoles rouvrent lundi.", ["ecoles"], "https://mairie.example.fr/ecoles")
        broadcasts.queue(info.id)
        run(Worker(settings_for(url, graph, wa, telegram_token=telegram.token, telegram_api_url=telegram.url)))
        report = broadcasts.report(info.id).as_dict()
        assert (report["sent"], report["reasons"]) == (1, {"failed": {"blocked": 1, "unavailable": 1}})
        [message] = telegram.messages_to(reader)
        assert "Les écoles rouvrent lundi." in message["text"]
        assert message["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://mairie.example.fr/ecoles"
    finally:
        telegram.stop()


def test_optin_webhooks_are_read_and_recorded(url):
    from bot.channels.meta_events import parse_webhook

    item = {"sender": {"id": "5551"}, "recipient": {"id": "104729483921045"}, "timestamp": 1_700_000_000_000,
            "optin": {"type": "notification_messages", "payload": "guichet-alertes", "title": "Alertes",
                      "notification_messages_token": "nmt_abc", "token_expiry_timestamp": 0,
                      "user_token_status": "NOT_REFRESHED", "unexpected": {"x": 1}}}
    batch = parse_webhook({"object": "page", "entry": [{"id": "104729483921045", "messaging": [
        item, {"sender": {"id": "5552"}, "optin": "not an object"}]}]}, "page", 0)
    assert batch.events == []
    optin = next(i for i in batch.ignored if i.reason == "optin")
    assert optin.details["notification_messages_token"] == "nmt_abc" and "unexpected" not in optin.details
    assert receipts.record_optin(url, "5551", optin.details) == "active"
    assert receipts.active_tokens(url, ["5551"]) == {"5551": "nmt_abc"}
    assert receipts.record_optin(url, "5551", {**optin.details, "notification_messages_status": receipts.STOP}) == "stopped"
    assert receipts.active_tokens(url, ["5551"]) == {}
    assert receipts.record_optin(url, "5551", {**optin.details, "notification_messages_status": receipts.RESUME}) == "resumed"
    assert receipts.record_optin(url, "5551", {"type": "one_time_notif_req"}) is None
    assert receipts.record_optin(url, "5551", {"type": "notification_messages"}) is None
    receipts.record_receipt(url, "not-ours", "messenger", "echo")
    assert receipts.receipts(url, ["not-ours"]) == {}
