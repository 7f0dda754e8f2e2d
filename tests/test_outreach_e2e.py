"""End to end: alerts and news, crisis mode, rumours and consultations with the real Rasa
server, action server and console, on the Messenger and WhatsApp simulators; broadcasts
sent by the real worker process (`python -m bot.broadcast worker`)."""

from __future__ import annotations

import datetime as dt
import random
import re
import secrets
import time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select

from bot.channels import receipts
from bot.db import session_scope
from bot.db.outreach_models import Delivery, Subscriber
from bot.outreach.subscriptions import Subscriptions
from tests.outreach_support import TEMPLATE, WorkerProcess, past_messages, report, wa_texts, wait_until
from tests.simulators import whatsapp_cloud as wa_sim
from tests.simulators.graph_api import Fault

pytestmark = pytest.mark.slow
HOUR, DAY = 3600, 86400
ZONE = ZoneInfo("Europe/Paris")


def number() -> str:
    return "336" + "".join(secrets.choice("0123456789") for _ in range(8))


def local_input(hours: float) -> str:
    """A `datetime-local` value `hours` from now, commune time."""
    return (dt.datetime.now(ZONE) + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


def url_of(stack) -> str:
    return stack.env["GUICHET_DATABASE_URL"]


def wait_texts(citizen, condition, timeout: float = 90) -> list[str]:
    return citizen.sim.wait_for(lambda: condition(citizen.texts()) and citizen.texts(), timeout)


def wa_wait(wa, who: str, condition, timeout: float = 90) -> list[dict]:
    return wait_until(lambda: condition(wa_texts(wa.messages_to(who))) and wa.messages_to(who), timeout)


def quick_replies(citizen) -> list[dict]:
    return [qr for s in citizen.sent() if s.message for qr in s.message.get("quick_replies") or []]


def wa_choices(message: dict) -> list[tuple[str, str]]:
    """(id, title) of an interactive WhatsApp message's buttons or list rows."""
    interactive = message.get("interactive") or {}
    if interactive.get("type") == "button":
        return [(b["reply"]["id"], b["reply"]["title"]) for b in interactive["action"]["buttons"]]
    return [(r["id"], r["title"]) for s in interactive.get("action", {}).get("sections", []) for r in s["rows"]]


@pytest.fixture
def editor(console):
    return console.client("redaction", role="editor")


@pytest.fixture
def admin(console):
    return console.client("administration", role="admin")


# Subscribing by chat ---------------------------------------------------------------------
def test_subscribe_by_chat_on_messenger_with_the_notification_optin(stack):
    url = url_of(stack)
    citizen = stack.graph.citizen()
    assert citizen.say("je veux être prévenu des travaux").status_code == 200
    wait_texts(citizen, lambda t: any("C'est noté" in x for x in t))
    optin = stack.graph.wait_for(lambda: [s for s in citizen.sent() if s.message and
                                         (s.message.get("attachment") or {}).get("payload", {}).get("template_type")
                                         == "notification_messages"])
    assert optin[0].messaging_type == "RESPONSE"
    assert Subscriptions(url).topics_of("messenger", citizen.id) == ["travaux"]
    assert "Écoles" in [qr["title"] for qr in quick_replies(citizen)]

    # Another topic with a quick reply; Meta's request is not sent twice in a week.
    before = len(citizen.sent())
    assert citizen.tap("Écoles", '/subscribe_alerts{"alert_topic":"ecoles"}').status_code == 200
    stack.graph.wait_for(lambda: any("Écoles" in s.text for s in citizen.sent()[before:]))
    assert Subscriptions(url).topics_of("messenger", citizen.id) == ["travaux", "ecoles"]
    assert not any((s.message or {}).get("attachment") for s in citizen.sent()[before:])

    # The citizen accepts the notifications: Meta's opt-in webhook gives the token.
    token = citizen.opt_in()
    stored = wait_until(lambda: (o := receipts.optin_of(url, citizen.id)) and o.status == "active" and o)
    assert stored.token == token and stored.title == "Alertes de la mairie"
    assert citizen.stop_notifications("guichet-alertes").status_code == 200
    wait_until(lambda: receipts.optin_of(url, citizen.id).status == "stopped")

    before = len(citizen.sent())
    assert citizen.say("stop alertes").status_code == 200
    stack.graph.wait_for(lambda: any("ne recevrez plus" in s.text for s in citizen.sent()[before:]))
    assert Subscriptions(url).topics_of("messenger", citizen.id) == []


def test_subscribe_with_topic_buttons_and_stop_on_whatsapp(stack):
    wa, who, url = stack.whatsapp, number(), url_of(stack)
    wa.say(who, "alertes")
    messages = wa_wait(wa, who, lambda t: any("Quels sujets" in x for x in t))
    choices = dict(wa_choices(messages[-1]))
    assert '/subscribe_alerts{"alert_topic":"ecoles"}' in choices and len(choices) == 5
    wa.post(wa.envelope([wa_sim.list_reply(who, '/subscribe_alerts{"alert_topic":"ecoles"}', "Écoles")]))
    wa_wait(wa, who, lambda t: any("C'est noté" in x for x in t))
    assert Subscriptions(url).topics_of("whatsapp", who) == ["ecoles"]

    # A bare "stop" is a cancel; with nothing to cancel, a subscriber is offered to stop.
    count = len(wa.messages_to(who))
    wa.say(who, "stop")
    offer = wait_until(lambda: [m for m in wa.messages_to(who)[count:] if "voulez-vous les arrêter" in
                                " ".join(wa_texts([m]))])
    stop_id = next(i for i, title in wa_choices(offer[0]) if title == "Tout arrêter")
    wa.post(wa.envelope([wa_sim.button_reply(who, stop_id, "Tout arrêter")]))
    wa_wait(wa, who, lambda t: any("ne recevrez plus" in x for x in t))
    assert Subscriptions(url).topics_of("whatsapp", who) == []


# Crisis mode ----------------------------------------------------------------------------
def test_crisis_message_at_greeting_and_first_on_questions_about_it(stack, console, admin, editor):
    answer = console.post(admin, "/crisis", {
        "title": "Coupure d'eau rue Pasteur", "message": "L'eau est coupée rue Pasteur. Des bouteilles sont "
        "distribuées place de la Mairie.", "link": "https://mairie.example.fr/coupure-eau",
        "keywords": "eau, robinet, coupure", "ends_at": local_input(5)})
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    crisis_id = answer.json()["crisis_id"]
    try:
        assert console.post(editor, "/crisis", {"title": "x"}).status_code == 403  # admins only
        citizen = stack.graph.citizen()
        assert citizen.say("bonjour").status_code == 200
        texts = wait_texts(citizen, lambda t: any("assistant automatique" in x for x in t))
        assert texts[0].startswith("⚠️ Coupure d'eau rue Pasteur") and "https://mairie.example.fr/coupure-eau" in texts[0]

        before = len(citizen.texts())
        assert citizen.say("la coupure d'eau dure jusqu'à quand ?").status_code == 200
        after = wait_texts(citizen, lambda t: len(t) > before)[before:]
        assert after[0].startswith("⚠️ Coupure d'eau rue Pasteur")

        wa, who = stack.whatsapp, number()
        wa.say(who, "bonjour")
        first = wa_wait(wa, who, lambda t: len(t) >= 2)
        assert wa_texts(first)[0].startswith("⚠️ Coupure d'eau rue Pasteur")
    finally:
        ended = console.post(admin, f"/crisis/{crisis_id}/end")
        assert ended.status_code == 200, ended.text
    citizen = stack.graph.citizen()
    citizen.say("bonjour")
    texts = wait_texts(citizen, lambda t: any("assistant automatique" in x for x in t))
    assert not any("Coupure" in t for t in texts)


# Rumours ----------------------------------------------------------------------------------
def test_rumour_question_gets_the_official_answer(stack, console, editor):
    answer = console.post(editor, "/rumours", {
        "statement": "La piscine municipale va fermer définitivement", "verdict": "faux",
        "answer": "La piscine reste ouverte. Elle fermera deux semaines en août pour l'entretien annuel.",
        "source": "https://mairie.example.fr/piscine", "source_date": "2026-11-20", "status": "published"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    rumour_id = answer.json()["rumour_id"]
    try:
        wa, who = stack.whatsapp, number()
        wa.say(who, "c'est vrai que la piscine municipale va fermer ?")
        texts = wa_texts(wa_wait(wa, who, lambda t: any("FAUX" in x for x in t)))
        reply = next(t for t in texts if "FAUX" in t)
        assert "reste ouverte" in reply and "https://mairie.example.fr/piscine" in reply and "20/11/2026" in reply

        citizen = stack.graph.citizen()
        citizen.say("il parait que la piscine ferme definitivement ???")
        reply = wait_texts(citizen, lambda t: any("FAUX" in x for x in t))
        assert any("reste ouverte" in t for t in reply)
    finally:
        console.post(editor, f"/rumours/{rumour_id}/status", {"status": "archived"})


# Consultations ----------------------------------------------------------------------------
def test_vote_once_per_citizen_and_results_with_a_chart(stack, console, editor):
    answer = console.post(editor, "/polls", {
        "question": "Quel nom pour la nouvelle place ?", "choice": ["Place Simone Veil", "Place des Tilleuls", ""],
        "ends_at": local_input(48), "offer_at_end": "1", "open_now": "1"})
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    poll_id = answer.json()["poll_id"]
    try:
        citizen = stack.graph.citizen()
        citizen.say("je veux donner mon avis à la consultation")
        wait_texts(citizen, lambda t: any("Quel nom pour la nouvelle place" in x for x in t))
        payloads = {qr["title"]: qr["payload"] for qr in quick_replies(citizen)}
        assert set(payloads) == {"Place Simone Veil", "Place des Tilleuls"}
        citizen.tap("Place des Tilleuls", payloads["Place des Tilleuls"])
        wait_texts(citizen, lambda t: any("« Place des Tilleuls » est enregistrée" in x for x in t))
        citizen.tap("Place Simone Veil", payloads["Place Simone Veil"])
        wait_texts(citizen, lambda t: any("déjà répondu" in x for x in t))

        # On WhatsApp the choices are reply buttons; the poll is offered after "au revoir".
        wa, who = stack.whatsapp, number()
        wa.say(who, "au revoir")
        offer = wa_wait(wa, who, lambda t: any("Quel nom pour la nouvelle place" in x for x in t))
        vote_id = next(i for i, title in wa_choices(offer[-1]) if title == "Place Simone Veil")
        wa.post(wa.envelope([wa_sim.button_reply(who, vote_id, "Place Simone Veil")]))
        wa_wait(wa, who, lambda t: any("est enregistrée" in x for x in t))

        # Offered to the subscribers: a broadcast whose buttons are the choices.
        subscriber = stack.graph.citizen()
        subscriber.say("je veux être prévenu des événements")
        wait_texts(subscriber, lambda t: any("C'est noté" in x for x in t))
        created = console.post(editor, "/broadcasts", {"title": "Consultation des habitants", "poll_id": str(poll_id),
                                                       "body": "La mairie vous consulte.", "topics": ["evenements"]})
        assert created.status_code == 200, created.text
        broadcast_id = created.json()["broadcast_id"]
        assert console.post(editor, f"/broadcasts/{broadcast_id}/send").status_code == 200
        worker = WorkerProcess(console.env, stack.workdir / "broadcast-worker.log").start(until_idle=True)
        assert worker.process.wait(timeout=120) == 0
        poll_message = stack.graph.wait_for(lambda: [s for s in subscriber.sent() if "🗳️" in s.text])[0]
        choice = next(q for q in poll_message.message["quick_replies"] if q["title"] == "Place des Tilleuls")
        subscriber.tap(choice["title"], choice["payload"])
        wait_texts(subscriber, lambda t: any("« Place des Tilleuls » est enregistrée" in x for x in t))

        results = editor.get(f"{console.url}/polls/{poll_id}", headers={"Accept": "application/json"}, timeout=30)
        assert results.json()["results"] == [{"choice": "Place Simone Veil", "votes": 1},
                                             {"choice": "Place des Tilleuls", "votes": 2}]
        page = editor.get(f"{console.url}/polls/{poll_id}", timeout=30).text
        assert '<svg role="img"' in page and "Place des Tilleuls, 2 réponses (67 %)" in page
        assert '<table class="table" id="results">' in page
    finally:
        console.post(editor, f"/polls/{poll_id}/state", {"action": "close"})


# Broadcasts ---------------------------------------------------------------------------------
def test_broadcast_to_500_subscribers_exact_report_never_twice_and_resumed_after_a_crash(stack, console, editor):
    """500 subscribers: Messenger (200 in the 24-hour window, 60 outside with the notification
    opt-in, 40 outside without), WhatsApp (150 in the window, 50 outside: the approved
    template); some fail for good, some fail once; the worker is killed mid-run (SIGKILL
    while Meta holds a call), restarted, and finishes: each citizen gets the alert once."""
    url, graph, wa = url_of(stack), stack.graph, stack.whatsapp
    with session_scope(url) as s:  # this test counts every subscriber
        s.execute(delete(Subscriber))
    now = time.time()
    rng = random.Random(6)
    people = ([("messenger", f"77{i:014d}", "window") for i in range(200)]
              + [("messenger", f"78{i:014d}", "token") for i in range(60)]
              + [("messenger", f"79{i:014d}", "closed") for i in range(40)]
              + [("whatsapp", f"3375{i:07d}", "window") for i in range(150)]
              + [("whatsapp", f"3376{i:07d}", "closed") for i in range(50)])
    rng.shuffle(people)
    subs = Subscriptions(url)
    history = []
    for channel, who, kind in people:
        at = now - HOUR if kind == "window" else now - 3 * DAY
        history.append((who, channel, at))
        if channel == "messenger":
            graph.note_user_message("messenger", who, int(at * 1000))
        else:
            wa.last_inbound[who] = at
        subs.subscribe(channel, who, ["travaux", "crise"] if kind == "token" else ["travaux"])
    for i in range(10):  # not in the audience
        subs.subscribe("messenger", f"80{i:014d}", ["ecoles"])
    past_messages(stack, history)
    tokens = [who for _, who, kind in people if kind == "token"]
    for who in tokens:
        graph.citizen("messenger", who).opt_in(payload="guichet-alertes", title="Alertes de la mairie")
    wait_until(lambda: len(receipts.active_tokens(url, tokens)) == 60)

    window_m = [who for channel, who, kind in people if channel == "messenger" and kind == "window"]
    window_w = [who for channel, who, kind in people if channel == "whatsapp" and kind == "window"]
    gone_m, flaky_m, gone_w, flaky_w = window_m[:5], window_m[5:15], window_w[:5], window_w[5:13]
    graph.inject(*[Fault("custom", status=400, code=551, message="This person isn't available right now.",
                         recipient=who) for who in gone_m])
    graph.inject(*[Fault("temporary", recipient=who) for who in flaky_m])
    wa.undeliverable.update(gone_w)
    wa.inject(*[wa_sim.Fault(status=400, code=130429, to=who) for who in flaky_w])
    held = next(who for channel, who, kind in people[240:] if channel == "messenger" and kind == "window"
                and who not in gone_m + flaky_m)
    graph.hold(recipient=held)
    graph.echo_webhooks, wa.status_webhooks, wa.templates = True, True, {TEMPLATE: 1}

    worker_env = {"GUICHET_BROADCAST_RETRY_BASE": "0.2", "GUICHET_BROADCAST_POLL_INTERVAL": "0.2",
                  "GUICHET_WHATSAPP_ALERT_TEMPLATE": TEMPLATE[0], "GUICHET_WHATSAPP_ALERT_TEMPLATE_LANGUAGE": TEMPLATE[1]}
    worker = WorkerProcess(console.env, stack.workdir / "broadcast-worker.log", extra=worker_env)
    try:
        created = console.post(editor, "/broadcasts", {
            "title": "Travaux rue Pasteur", "body": "La rue Pasteur est fermée lundi de 8 h à 17 h. Déviation par "
            "l'avenue de la Gare.", "link": "https://mairie.example.fr/travaux", "topics": ["travaux"]})
        assert created.status_code == 200, created.text
        broadcast_id = created.json()["broadcast_id"]
        preview = editor.get(f"{console.url}/broadcasts/{broadcast_id}", timeout=30)
        assert "Envoyer à 500 abonnés" in preview.text and "Messenger : 300" in preview.text
        sent = console.post(editor, f"/broadcasts/{broadcast_id}/send")
        assert sent.json() == {"ok": True, "deliveries": 500}
        assert console.post(editor, f"/broadcasts/{broadcast_id}/send").status_code == 409  # never twice

        worker.start(GUICHET_BROADCAST_STALE_AFTER="600")
        wait_until(lambda: graph.holding == 1, message="the worker never reached the held citizen")
        worker.kill()  # a crash in the middle of a call
        mid = report(console, editor, broadcast_id)
        assert mid["sending"] >= 1 and mid["pending"] > 0 and 0 < mid["sent"] < 450
        graph.release()  # Meta finishes the held call: the message went out, its echo comes
        key = receipts.delivery_key(_delivery_of(url, broadcast_id, held))
        wait_until(lambda: receipts.receipts(url, [key]).get(key), message="no echo for the held message")

        worker.start(GUICHET_BROADCAST_STALE_AFTER="1")
        final = wait_until(lambda: (r := report(console, editor, broadcast_id)) and
                           r["status"] == "done" and r, timeout=300)
    finally:
        worker.stop()
        graph.clear_faults()
        graph.echo_webhooks, wa.status_webhooks, wa.templates = False, False, None
        wa.undeliverable.difference_update(gone_w)

    assert (final["total"], final["sent"], final["failed"], final["skipped"]) == (500, 450, 10, 40)
    assert final["reasons"] == {"failed": {"unavailable": 5, "undeliverable": 5},
                                "skipped": {"window_closed_no_optin": 40}}
    assert final["routes"] == {"standard": 340, "notification_token": 60, "template": 50}
    assert final["by_channel"] == {"messenger": {"sent": 255, "failed": 5, "skipped": 40},
                                   "whatsapp": {"sent": 195, "failed": 5}}
    # Exactly one message per citizen who should get it, none for the others.
    for channel, who, kind in people:
        got = len(graph.sent_to(who)) if channel == "messenger" else len(wa.messages_to(who))
        expected = 0 if who in gone_m + gone_w or kind == "closed" and channel == "messenger" else 1
        assert got == expected, (channel, who, kind, got)
    assert len(graph.calls_to(held)) == 1  # the held call was confirmed by its echo, not resent
    assert all(len(graph.calls_to(who)) == 2 for who in flaky_m)
    assert all(len(wa.requests_to(who)) == 2 for who in flaky_w)
    for who in tokens:
        [message] = graph.sent_to(who)
        assert message.messaging_type is None and "Travaux rue Pasteur" in message.text
    assert all(m["type"] == "template" for _, who, kind in people if kind == "closed"
               for m in wa.messages_to(who))
    assert "interrupted" in worker.log() or "found interrupted" in worker.log()
    page = editor.get(f"{console.url}/broadcasts/{broadcast_id}", timeout=30).text
    assert 'data-status="sent">450<' in page and 'data-reason="window_closed_no_optin"' in page


def _delivery_of(url: str, broadcast_id: int, recipient: str) -> int:
    with session_scope(url) as s:
        return s.execute(select(Delivery.id).where(Delivery.broadcast_id == broadcast_id,
                                                   Delivery.recipient == recipient)).scalar_one()


# The console ------------------------------------------------------------------------------
def test_console_pages_check_roles_csrf_and_escape_text(console, editor):
    agent = console.client("agent-accueil", role="agent")
    for path in ("/broadcasts", "/rumours", "/polls", "/crisis"):
        assert agent.get(f"{console.url}{path}", timeout=30).status_code == 403
    assert editor.get(f"{console.url}/crisis", timeout=30).status_code == 403
    no_csrf = editor.post(f"{console.url}/broadcasts", data={"title": "x", "body": "y", "topics": "crise"},
                          allow_redirects=False, timeout=30)
    assert no_csrf.status_code == 403
    created = console.post(editor, "/broadcasts", {"title": "<script>alert(1)</script>", "body": "<b>gras</b>",
                                                   "topics": ["evenements"]})
    page = editor.get(f"{console.url}/broadcasts/{created.json()['broadcast_id']}", timeout=30).text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    bad = console.post(editor, "/broadcasts", {"title": "Sans sujet", "body": "Texte", "topics": []})
    assert bad.status_code == 400 and "sujet" in bad.json()["error"]
    bad = console.post(editor, "/polls", {"question": "Oui ?", "choice": ["Oui"], "ends_at": local_input(2)})
    assert bad.status_code == 400 and "2 à 5" in bad.json()["error"]
    assert console.post(editor, "/broadcasts/999999/send").status_code == 409


def test_editor_writes_and_previews_a_broadcast_in_the_browser(stack, console):
    from playwright.sync_api import sync_playwright

    from tests.handoff_support import PASSWORD, launch_chromium

    console.create_agent("com-mairie", role="editor", name="Communication")
    Subscriptions(url_of(stack)).subscribe("whatsapp", number(), ["evenements"])
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            page.goto(f"{console.url}/login")
            page.get_by_label("Identifiant").fill("com-mairie")
            page.get_by_label("Mot de passe").fill(PASSWORD)
            page.get_by_role("button", name="Se connecter").click()
            page.get_by_role("link", name="Alertes et actualités").click()
            page.get_by_label(re.compile(r"^Titre")).fill("Fête de la musique")
            page.get_by_label(re.compile(r"^Message")).fill("Concerts gratuits place de la Mairie, <b>de 18 h à minuit</b>.")
            page.get_by_label(re.compile(r"^Lien officiel")).fill("https://mairie.example.fr/fete")
            page.get_by_label("Événements et sorties").check()
            page.get_by_role("button", name="Prévisualiser").click()
            page.wait_for_url(f"{console.url}/broadcasts/*")
            preview = page.get_by_label("Aperçu du message tel que l'usager le reçoit")
            assert "<b>de 18 h à minuit</b>" in preview.inner_text()  # shown as text, not markup
            assert page.get_by_role("button", name="Envoyer à").is_visible()
            assert page.evaluate("document.querySelectorAll('b').length") == 0
        finally:
            browser.close()
