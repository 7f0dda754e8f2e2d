"""End to end: the real Rasa server, action server and console, the Messenger simulator,
and an agent in Debian's chromium (Playwright)."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import requests
import yaml

from bot.handoff import messages
from bot.settings import PROJECT_ROOT
from tests.handoff_support import PASSWORD, launch_chromium, wait_until

pytestmark = pytest.mark.slow
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
PHONE = "02 54 00 00 00"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> Bonjour, mon dossier ?'


def sender() -> str:
    return f"handoff-{uuid.uuid4().hex[:10]}"


def texts(replies: list[dict]) -> str:
    return "\n".join(m.get("text", "") for m in replies)


def bot_texts(stack, conversation: str) -> list[str]:
    tracker = requests.get(f"{stack.url}/conversations/{conversation}/tracker",
                           params={"token": stack.env["GUICHET_RASA_TOKEN"]}, timeout=30).json()
    return [e.get("text") or "" for e in tracker["events"] if e["event"] == "bot"]


@pytest.fixture
def agents_offline(console):
    console.everyone_offline()
    yield
    console.everyone_offline()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def browser_login(browser, console, username: str, viewport=(1024, 768)):
    console.create_agent(username, name=username.title())
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(f"{console.url}/login")
    page.get_by_label("Identifiant").fill(username)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(f"{console.url}/")
    return page


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_messenger_citizen_reaches_an_agent_in_the_browser_and_gets_the_bot_back(stack, console, agents_offline, browser):
    page = browser_login(browser, console, "marie")
    shot(page, "01-file-attente-vide")
    citizen = stack.graph.citizen()

    assert citizen.say("je voudrais parler à une vraie personne svp").status_code == 200
    connecting = stack.graph.wait_for(lambda: [t for t in citizen.texts() if "Je vous mets en relation" in t])
    assert "le prochain à être pris en charge" in connecting[0] and "annuler" in connecting[0]

    # The queue updates itself (server-sent events), with the count in the tab title.
    card = page.locator(".escalation").filter(has_text="Messenger")
    card.wait_for(timeout=30_000)
    wait_until(lambda: page.title().startswith("(1)"), message=f"title is {page.title()!r}")
    card.locator("summary").click()
    assert "je voudrais parler à une vraie personne" in card.inner_text()
    shot(page, "02-file-attente-usager")

    # While paused the bot says nothing, whatever the citizen writes.
    sent_before = len(citizen.texts())
    citizen.say(XSS)
    card.get_by_role("button", name="Prendre en charge").click()
    page.wait_for_url(f"{console.url}/escalations/*")
    transcript = page.locator("#transcript")
    transcript.locator(".msg--citizen", has_text="<script>").wait_for(timeout=30_000)
    assert page.evaluate("window.__xss") is None
    assert transcript.locator("img").count() == 0 and transcript.locator("script").count() == 0

    # A new citizen message appears in the agent's view without reloading.
    citizen.say("Je voudrais savoir où en est ma demande de passeport.")
    transcript.locator(".msg--citizen", has_text="passeport").wait_for(timeout=30_000)
    assert page.evaluate("window.__xss") is None

    page.get_by_label("Nouvelle note").fill("Usager déjà venu mardi ; vérifier le dossier ANTS.")
    page.get_by_role("button", name="Ajouter la note").click()
    page.locator(".notes").get_by_text("vérifier le dossier ANTS").wait_for()

    reply = "Bonjour, je suis Marie, de l'accueil de la mairie. Je regarde votre dossier."
    page.get_by_label("Votre réponse à l'usager").fill(reply)
    page.keyboard.press("Enter")
    stack.graph.wait_for(lambda: reply in citizen.texts())
    transcript.locator(".msg--agent", has_text="Je regarde votre dossier").wait_for()
    agent_sends = [s for s in citizen.sent() if s.text == reply]
    assert agent_sends and agent_sends[0].messaging_type in ("RESPONSE", "MESSAGE_TAG")
    assert citizen.texts()[sent_before:] == [reply], "the bot spoke while an agent had the conversation"
    shot(page, "03-conversation")
    page.set_viewport_size({"width": 768, "height": 1024})  # a tablet, portrait
    shot(page, "05-tablette")
    page.set_viewport_size({"width": 1024, "height": 768})
    # RGAA basics: every field has a label, the page has one h1 and a language, and the
    # first Tab reaches the skip link.
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !e.labels || e.labels.length === 0).map(e => e.outerHTML)""")
    assert unlabelled == []
    assert page.locator("h1").count() == 1 and page.get_attribute("html", "lang") == "fr"
    page.reload()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Aller au contenu"

    # The reply is in the conversation's log too (Rasa's tracker), marked as a person's.
    tracker = requests.get(f"{stack.url}/conversations/{citizen.id}/tracker",
                           params={"token": stack.env["GUICHET_RASA_TOKEN"]}, timeout=30).json()
    agent_events = [e for e in tracker["events"] if e["event"] == "bot" and e.get("text") == reply]
    assert agent_events and agent_events[0]["metadata"]["human_agent"] is True

    page.get_by_role("button", name="Rendre la main au robot").click()
    page.wait_for_url(f"{console.url}/")
    stack.graph.wait_for(lambda: messages.HANDED_BACK in citizen.texts())
    count = len(citizen.texts())
    citizen.say("quels sont les horaires d'ouverture de la mairie ?")
    answer = stack.graph.wait_for(lambda: citizen.texts()[count:])
    assert "8 h 30" in "\n".join(answer)

    # Requests kept for later, as agents see them.
    from bot.handoff.service import HandoffService

    service = HandoffService(console.database_url)
    ticket = service.open_ticket("demo-1", "whatsapp", "request", "Bonjour, je voudrais un rendez-vous pour un Pacs.")
    service.add_callback(ticket, "phone", "06 12 34 56 78")
    page.goto(f"{console.url}/tickets")
    page.get_by_role("rowheader", name=ticket.reference).wait_for()
    shot(page, "04-demandes-et-rappels")
    page.get_by_role("button", name=f"Marquer traitée la demande {ticket.reference}").click()
    page.wait_for_url(f"{console.url}/tickets")
    assert page.get_by_role("rowheader", name=ticket.reference).count() == 0


def test_outside_opening_hours_a_callback_request_is_stored_with_a_reference(stack, console, agents_offline):
    from sqlalchemy import select

    from bot.db import CallbackRequest, Ticket, session_scope

    facts = yaml.safe_load(stack.commune_file.read_text(encoding="utf-8"))
    original = stack.commune_file.read_text(encoding="utf-8")
    facts["fermetures"] = [{"du": "2026-03-02", "au": "2026-03-06", "motif": "inventaire"}]
    try:
        stack.commune_file.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
        future = time.time() + 5
        os.utime(stack.commune_file, (future, future))
        console.create_agent("online-but-closed")
        who = sender()
        offer = stack.say(who, "je veux parler à un agent de la mairie")
        text = texts(offer)
        assert "fermeture exceptionnelle (inventaire)" in text and PHONE in text
        assert "le samedi 7 mars à 9 h" in text
        reference = text.split("référence ")[1][:8]
        assert offer[0]["buttons"] == [{"title": messages.CALLBACK_BUTTON, "payload": "/request_callback"}]

        assert "numéro de téléphone ou" in texts(stack.say(who, "/request_callback"))
        assert "pas reconnu" in texts(stack.say(who, "mon numéro c'est le 12"))
        consent = stack.say(who, "06 12 34 56 78")
        assert "06 12 34 56 78" in texts(consent) and consent[0]["buttons"][0]["payload"] == "/affirm"
        assert "oui" in texts(stack.say(who, "peut-être"))
        done = texts(stack.say(who, "/affirm"))
        assert reference in done and "06 12 34 56 78" in done

        with session_scope(console.database_url) as s:
            ticket = s.execute(select(Ticket).where(Ticket.reference == reference)).scalar_one()
            callback = s.execute(select(CallbackRequest).where(CallbackRequest.ticket_id == ticket.id)).scalar_one()
            assert (callback.contact, callback.contact_kind, callback.consent) == ("0612345678", "phone", True)
            assert ticket.conversation_id == who and ticket.channel == "api"

        # The bot is itself again afterwards.
        assert "8 h 30" in texts(stack.say(who, "horaires de la mairie ?"))

        # Without consent, nothing is kept but the reference.
        other = sender()
        stack.say(other, "je veux parler à un agent de la mairie")
        stack.say(other, "/request_callback")
        stack.say(other, "prenom.nom@exemple.fr")
        refused = texts(stack.say(other, "/deny"))
        assert "je ne conserve pas vos coordonnées" in refused and "RAP-" in refused
        with session_scope(console.database_url) as s:
            stored = s.execute(select(CallbackRequest.contact)).scalars().all()
            assert "prenom.nom@exemple.fr" not in stored
    finally:
        stack.commune_file.write_text(original, encoding="utf-8")
        future = time.time() + 10
        os.utime(stack.commune_file, (future, future))


def test_callback_form_can_be_cancelled(stack, agents_offline):
    who = sender()
    stack.say(who, "je veux parler à un agent de la mairie")
    stack.say(who, "/request_callback")
    cancelled = texts(stack.say(who, "annuler"))
    assert cancelled == messages.CANCEL_NOTHING
    assert "8 h 30" in texts(stack.say(who, "horaires de la mairie ?"))


def queue_citizen(stack, console, agent: str = "permanence") -> str:
    client = console.client(agent)  # logging in makes the agent online
    who = sender()
    reply = texts(stack.say(who, "je veux parler à un agent de la mairie"))
    assert "Je vous mets en relation" in reply and PHONE in reply
    client.close()
    return who


def test_concurrent_claims_in_the_console(stack, console, agents_offline):
    who = queue_citizen(stack, console)
    escalation = console.escalation_of(who)
    clients = [console.client(f"rival{i}") for i in range(6)]
    barrier = threading.Barrier(len(clients))
    results: list[tuple[object, int]] = []

    def claim(client) -> None:
        barrier.wait()
        results.append((client, console.post(client, f"/escalations/{escalation.id}/claim").status_code))

    threads = [threading.Thread(target=claim, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for _, status in results) == [200] + [409] * 5
    loser = next(client for client, status in results if status == 409)
    refused = console.post(loser, f"/escalations/{escalation.id}/claim")
    assert "déjà prise en charge par" in refused.json()["error"]


def test_citizen_can_leave_the_queue_with_annuler(stack, console, agents_offline):
    who = queue_citizen(stack, console)
    assert stack.say(who, "annuler") == []  # paused: Rasa says nothing, the console acts
    wait_until(lambda: messages.CANCELLED in bot_texts(stack, who), message="no cancel message")
    assert console.escalation_of(who) is None
    assert "8 h 30" in texts(stack.say(who, "horaires de la mairie ?"))


def test_a_long_message_with_annuler_goes_to_the_agent(stack, console, agents_offline):
    who = queue_citizen(stack, console)
    stack.say(who, "je voudrais annuler mon rendez-vous de jeudi pour la carte d'identité")
    time.sleep(2)  # give the watcher a chance to (wrongly) act
    assert console.escalation_of(who) is not None
    assert messages.CANCELLED not in bot_texts(stack, who)


def test_unclaimed_escalation_expires_with_the_callback_offer(stack, console, agents_offline):
    from sqlalchemy import update

    from bot.db import Escalation, session_scope, utcnow

    who = queue_citizen(stack, console)
    escalation = console.escalation_of(who)
    with session_scope(console.database_url) as s:
        s.execute(update(Escalation).where(Escalation.id == escalation.id)
                  .values(created_at=utcnow().replace(year=2025)))
    expired = wait_until(lambda: [t for t in bot_texts(stack, who) if "aucun agent n'a pu vous répondre" in t],
                         timeout=60, message="no expiry message")
    assert "RAP-" in expired[0] and PHONE in expired[0]
    assert console.escalation_of(who, ("expired",)).resumed_at is not None
    assert "numéro de téléphone ou" in texts(stack.say(who, "/request_callback"))


def test_emergency_topic_gives_the_numbers_first_then_a_person(stack, console, agents_offline):
    console.client("urgences")
    who = sender()
    replies = stack.say(who, '/faq{"faq_topic":"urgence"}')
    assert "112" in replies[0]["text"]
    assert "Je vous mets en relation" in texts(replies[1:])
    assert console.escalation_of(who).reason == "topic"


def test_restarts_mid_handoff_lose_nothing(stack, console, agents_offline):
    who = queue_citizen(stack, console)
    console.stop()
    try:
        assert stack.say(who, "Je suis toujours là, c'est pour un acte de naissance.") == []
    finally:
        console.start()
    agent = console.client("apres-redemarrage")
    escalation = console.escalation_of(who)
    assert f'data-escalation-id="{escalation.id}"' in agent.get(f"{console.url}/fragments/queue", timeout=30).text
    assert console.post(agent, f"/escalations/{escalation.id}/claim").status_code == 200
    history = agent.get(f"{console.url}/escalations/{escalation.id}/messages", timeout=30).json()["messages"]
    assert any("acte de naissance" in m["text"] for m in history)

    stack.stop("actions")
    try:
        stack.start_actions()
    finally:
        pass
    assert stack.say(who, "Vous êtes là ?") == []
    sent = console.post(agent, f"/escalations/{escalation.id}/reply", {"text": "Oui, je vous réponds."})
    assert sent.status_code == 200
    wait_until(lambda: "Oui, je vous réponds." in bot_texts(stack, who))
    assert console.post(agent, f"/escalations/{escalation.id}/close", {"outcome": "resolu"}).status_code == 200
    wait_until(lambda: messages.CLOSED in bot_texts(stack, who))
    assert "8 h 30" in texts(stack.say(who, "horaires de la mairie ?"))


def test_agent_reply_while_rasa_is_down_is_kept_and_can_be_sent_again(stack, console, agents_offline):
    who = queue_citizen(stack, console)
    agent = console.client("patiente")
    escalation = console.escalation_of(who)
    assert console.post(agent, f"/escalations/{escalation.id}/claim").status_code == 200
    stack.stop("rasa")
    try:
        failed = console.post(agent, f"/escalations/{escalation.id}/reply", {"text": "Un instant."})
        assert failed.status_code == 502 and "conservé" in failed.json()["error"]
        page = console.post(agent, f"/escalations/{escalation.id}/reply", {"text": "Un instant."}, json_reply=False)
        assert page.status_code == 502 and "Un instant." in page.text  # the draft is kept in the form
        assert console.post(agent, f"/escalations/{escalation.id}/handback").status_code == 200
    finally:
        stack.start_rasa()
    # The hand back is retried by the console until Rasa answers again.
    wait_until(lambda: messages.HANDED_BACK in bot_texts(stack, who), timeout=60)
    assert "8 h 30" in texts(stack.say(who, "horaires de la mairie ?"))


def test_asking_for_a_person_while_the_action_server_is_down_gives_the_contact(stack, agents_offline):
    stack.stop("actions")
    try:
        reply = texts(stack.say(sender(), "je veux parler à un agent de la mairie"))
        assert PHONE in reply
    finally:
        stack.start_actions()
