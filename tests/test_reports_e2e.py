"""Reports, complaints, tracking and personal data end to end: the real Rasa server, action
server and console, citizens on the Messenger and WhatsApp simulators, staff over HTTP and
in Debian's chromium (Playwright)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import requests
from sqlalchemy import insert, inspect, select, text

from bot.db import get_engine, session_scope, utcnow
from bot.db.tickets import CitizenRequest, ErasureRequest, RequestNotification
from bot.handoff.tracker_feed import EVENTS
from bot.reports.service import NewRequest, RequestService
from bot.settings import PROJECT_ROOT
from tests.handoff_support import PASSWORD, launch_chromium, wait_until
from tests.simulators import whatsapp_cloud as sim

pytestmark = pytest.mark.slow
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
PHONE = "06 12 34 56 78"
PHONE_DIGITS = "0612345678"


def wa_number() -> str:
    return "336" + uuid.uuid4().int.__str__()[:8]


def service(stack) -> RequestService:
    return RequestService(stack.env["GUICHET_DATABASE_URL"])


def wait_text(texts: Any, needle: str, timeout: float = 90) -> str:
    """The first message containing `needle` (`texts()` lists the messages sent so far)."""
    found = wait_until(lambda: [t for t in texts() if needle in t], timeout=timeout,
                       message=f"no message containing {needle!r}: {texts()}")
    return found[0]


def wa_texts(wa: sim.WhatsAppCloudSimulator, who: str):  # noqa: ANN201
    def texts() -> list[str]:
        out = []
        for m in wa.messages_to(who):
            if m["type"] == "text":
                out.append(m["text"]["body"])
            elif m["type"] == "interactive":
                out.append(m["interactive"]["body"]["text"])
        return out

    return texts


def messenger_request(stack, citizen_id: str, **overrides: Any) -> CitizenRequest:
    values = dict(kind="report", category="proprete", description="Des sacs poubelles éventrés impasse des Roses",
                  conversation_id=citizen_id, channel="messenger", place="impasse des Roses")
    values.update(overrides)
    return service(stack).create(NewRequest(**values))


def change_status(console, client, request_id: int, status: str, expected: str, message: str = "") -> dict:
    answer = console.post(client, f"/signalements/{request_id}/status",
                          {"status": status, "expected": expected, "message": message})
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


# Reports and their tracking -------------------------------------------------------------------------------
def test_messenger_report_with_a_location_and_a_photo_then_the_status_change_reaches_the_citizen(stack, console):
    citizen = stack.graph.citizen("messenger")
    citizen.say("il y a un énorme nid de poule devant l'école Jules Ferry, c'est dangereux pour les vélos")
    wait_text(citizen.texts, "De quel type de problème")
    assert any("« annuler »" in t for t in citizen.texts())
    category = [s for s in citizen.sent() if "De quel type" in s.text][0]
    assert [q["title"] for q in category.message["quick_replies"]][:2] == ["Voirie", "Éclairage"]
    citizen.tap("Voirie", "Voirie")
    wait_text(citizen.texts, "Où se trouve le problème")
    citizen.attach("location", coordinates=(47.5912, 1.3281))
    wait_text(citizen.texts, "Avez-vous une photo")  # the first message already described it
    citizen.attach("image", "https://cdn.example/nid-de-poule.jpg")
    wait_text(citizen.texts, "recontacté")
    citizen.say(PHONE)
    wait_text(citizen.texts, "Acceptez-vous")
    citizen.tap("Oui, j'accepte", "/affirm")
    summary = wait_text(citizen.texts, "Récapitulatif")
    assert "Voirie" in summary and "47.59120" in summary and "jointe" in summary and PHONE in summary
    citizen.tap("Envoyer", "/affirm")
    done = wait_text(citizen.texts, "référence SIG-")
    reference = re.search(r"SIG-[2-9A-Z]{4}", done).group(0)
    assert f"où en est {reference}" in done and "10 jours" in done

    stored = service(stack).by_reference(reference)
    assert (stored.category, stored.latitude, stored.longitude) == ("voirie", 47.5912, 1.3281)
    assert "nid de poule" in stored.description and stored.channel == "messenger"
    assert json.loads(stored.photos) == [{"type": "image", "channel": "messenger", "url": "https://cdn.example/nid-de-poule.jpg"}]
    assert (stored.contact, stored.contact_kind) == (PHONE_DIGITS, "phone") and stored.consent_at is not None

    agent = console.client("voirie-agent")
    page = agent.get(f"{console.url}/signalements", params={"status": "new", "category": "voirie"}, timeout=10)
    assert page.status_code == 200 and reference in page.text
    result = change_status(console, agent, stored.id, "in_progress", "new", "Une équipe passe jeudi matin.")
    assert result == {"ok": True, "status": "in_progress", "notification": "sent"}
    update = wait_text(citizen.texts, "Du nouveau")
    assert reference in update and "s'en occupent" in update and "Une équipe passe jeudi matin." in update
    sent = [s for s in citizen.sent() if "Du nouveau" in s.text][0]
    assert sent.messaging_type == "UPDATE"  # a proactive message inside the 24-hour window
    # A second agent who saw the old status cannot overwrite it.
    late = console.post(agent, f"/signalements/{stored.id}/status", {"status": "resolved", "expected": "new"})
    assert late.status_code == 409

    citizen.say(f"où en est {reference.lower()} ?")
    status = wait_text(citizen.texts, f"Signalement {reference}")
    assert "en cours de traitement" in status


def test_whatsapp_complaint_with_the_communes_deadline_then_tracking(stack, console):
    wa, who = stack.whatsapp, wa_number()
    texts = wa_texts(wa, who)
    wa.say(who, "je veux faire une réclamation")
    wait_text(texts, "Quel service")
    wa.post(wa.envelope([sim.list_reply(who, "Accueil de la mairie", "Accueil de la mairie")]))
    wait_text(texts, "Expliquez ce qui s'est passé")
    wa.say(who, "J'ai appelé la mairie cinq fois la semaine dernière et personne n'a décroché.")
    wait_text(texts, "recontacté")
    wa.post(wa.envelope([sim.button_reply(who, "/deny", "Non merci")]))
    summary = wait_text(texts, "Récapitulatif")
    assert "Accueil de la mairie" in summary and "cinq fois" in summary
    wa.post(wa.envelope([sim.button_reply(who, "/affirm", "Envoyer")]))
    done = wait_text(texts, "référence REC-")
    reference = re.search(r"REC-[2-9A-Z]{4}", done).group(0)
    due = (utcnow() + dt.timedelta(days=30)).date()
    assert "sous 30 jours" in done and str(due.year) in done
    stored = service(stack).by_reference(reference)
    assert stored.kind == "complaint" and stored.category == "accueil" and stored.contact is None
    assert stored.due_at.date() == due

    wa.say(who, f"bonjour, où en est ma réclamation {reference} ?")
    status = wait_text(texts, f"Réclamation {reference}")
    assert "reçu" in status and "au plus tard" in status


def test_cancel_and_correct_in_the_report_form(stack):
    wa, who = stack.whatsapp, wa_number()
    texts = wa_texts(wa, who)
    wa.say(who, "signaler un problème")
    wait_text(texts, "De quel type de problème")
    wa.post(wa.envelope([sim.list_reply(who, "Éclairage", "Éclairage")]))
    wait_text(texts, "Où se trouve le problème")
    wa.say(who, "rue des Acacias")
    wait_text(texts, "Décrivez le problème")
    wa.say(who, "corriger")
    wait_text(texts, "Que voulez-vous corriger")
    wa.post(wa.envelope([sim.button_reply(who, '/correct{"request_field":"place"}', "Lieu")]))
    wait_text(texts, "modifions : le lieu")
    before = len(texts())
    wa.post(wa.envelope([sim.location_message(who, 47.3941, 0.6848, "Square", "5 rue des Acacias")]))
    wait_until(lambda: any("Décrivez le problème" in t for t in texts()[before:]), message=str(texts()))
    wa.say(who, "annuler")
    wait_text(texts, "C'est annulé")
    assert service(stack).for_conversation(who) == []


def test_closed_windows_are_recorded_on_the_request(stack, console):
    agent = console.client("fenetre-agent")
    # Messenger: the citizen last wrote 30 hours ago.
    citizen = stack.graph.citizen("messenger")
    citizen.say("bonjour", ago=30 * 3600)
    late = messenger_request(stack, citizen.id)
    result = change_status(console, agent, late.id, "resolved", "new", "C'est nettoyé.")
    assert result["notification"] == "not_delivered"
    [notification] = service(stack).notifications(late.id)
    assert notification.reason == "window_closed"
    page = agent.get(f"{console.url}/signalements/{late.id}", timeout=10).text
    assert "Non remis" in page and "hors de la fenêtre de 24 h" in page
    assert not [t for t in citizen.texts() if "Du nouveau" in t]

    # WhatsApp: the customer service window closed two days ago.
    wa, who = stack.whatsapp, wa_number()
    wa.post(wa.envelope([sim.text_message(who, "bonjour", timestamp=time.time() - 2 * 86400)]))
    wait_until(lambda: _failures(stack, who), message="the old message was never processed")
    request = messenger_request(stack, who, channel="whatsapp")
    result = change_status(console, agent, request.id, "in_progress", "new")
    assert result["notification"] == "not_delivered"
    assert service(stack).notifications(request.id)[0].reason == "window_closed"
    assert all("Du nouveau" not in t for t in wa_texts(wa, who)())
    # The number is masked in the logs that mention it.
    log = stack.log("rasa")
    assert who not in log and f"[tél. …{who[-2:]}]" in log


def _failures(stack, who: str) -> list[dict]:
    answer = requests.get(f"{stack.url}/webhooks/whatsapp/deliveries", params={"recipient": who},
                          headers={"Authorization": f"Bearer {stack.env['GUICHET_RASA_TOKEN']}"}, timeout=10)
    return answer.json()["failures"]


# Personal data ------------------------------------------------------------------------------------------------
def _personal_traces(url: str, needles: list[str]) -> list[str]:
    """Every place in the database (any table, any text column) where a needle appears."""
    found = []
    engine = get_engine(url)
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).mappings().all()
            for row in rows:
                blob = json.dumps({k: str(v) for k, v in row.items()}, ensure_ascii=False)
                found += [f"{table}: {needle}" for needle in needles if needle in blob]
    return found


def test_privacy_notice_export_and_erasure_leave_nothing_personal(stack, console):
    citizen = stack.graph.citizen("messenger")
    url = stack.env["GUICHET_DATABASE_URL"]
    digits = "07" + str(uuid.uuid4().int)[:8]  # this citizen's own number and address
    phone, email = " ".join(digits[i:i + 2] for i in range(0, 10, 2)), f"marie.{digits}@example.fr"
    citizen.say("Bonjour")
    greeting = wait_text(citizen.texts, "assistant automatique")
    assert "mes données" in greeting and "donnees-personnelles" in greeting
    citizen.say("salut")
    wait_until(lambda: len([t for t in citizen.texts() if "assistant automatique" in t]) == 2)
    assert "mes données" not in [t for t in citizen.texts() if "assistant automatique" in t][1]

    report = messenger_request(stack, citizen.id, contact=email, contact_kind="email", consent=True,
                               photos=({"type": "image", "channel": "messenger", "url": f"https://cdn.example/{digits}.jpg"},),
                               description=f"Sacs éventrés, appelez-moi au {phone} ou écrivez à {email}")
    citizen.say("quelles données avez-vous sur moi ?")
    summary = wait_text(citizen.texts, "Voici les données")
    assert report.reference in summary and email in summary
    wait_text(citizen.texts, "dpo@")
    link = re.search(r"(http\S+/webhooks/donnees/\S+)", wait_text(citizen.texts, "lien personnel")).group(1)
    page = requests.get(link, timeout=10)
    assert page.status_code == 200 and report.reference in page.text
    # The turn that sent the link is in the tracker store once Rasa has finished it.
    wait_until(lambda: "quelles données avez-vous sur moi ?" in requests.get(link, timeout=10).text, timeout=15,
               message="the page never showed the citizen's last message")
    own = requests.get(f"{link}/fichier.json", timeout=10).json()
    assert own["requests"][0]["contact"] == email and own["conversation_id"] == citizen.id

    admin = console.client("rgpd-admin", role="admin")
    exported = admin.get(f"{console.url}/confidentialite/export", params={"conversation": citizen.id}, timeout=10)
    assert exported.status_code == 200 and "attachment" in exported.headers["Content-Disposition"]
    data = exported.json()
    assert data["requests"][0]["reference"] == report.reference
    assert "quelles données avez-vous sur moi ?" in [m["text"] for m in data["messages"]]
    agent = console.client("rgpd-agent")
    assert agent.get(f"{console.url}/confidentialite", timeout=10).status_code == 403

    citizen.say("je veux supprimer mes données")
    wait_text(citizen.texts, "Voulez-vous vraiment supprimer")
    citizen.tap("Oui, tout supprimer", "/affirm")
    wait_text(citizen.texts, "C'est fait")

    def erased() -> bool:
        with session_scope(url) as s:
            return s.execute(select(ErasureRequest).where(ErasureRequest.status == "done",
                                                          ErasureRequest.events_deleted > 0)).first() is not None

    wait_until(erased, timeout=90, message="the console did not finish the erasure")
    with get_engine(url).connect() as connection:
        left = connection.execute(select(EVENTS.c.id).where(EVENTS.c.sender_id == citizen.id)).all()
    assert left == []
    kept = service(stack).get(report.id)
    assert kept.anonymised_at is not None and kept.category == "proprete" and kept.place == "impasse des Roses"
    assert _personal_traces(url, [citizen.id, email, phone, digits]) == []
    assert requests.get(link, timeout=10).status_code == 404  # the link died with the data
    logs = stack.log("rasa") + stack.log("actions") + console.log()
    assert email not in logs and phone not in logs and digits not in logs

    # Writing again is a first contact again.
    citizen.say("Bonjour")
    wait_until(lambda: len([t for t in citizen.texts() if "mes données" in t and "assistant automatique" in t]) == 2)


def test_the_retention_purge_command(stack):
    url = stack.env["GUICHET_DATABASE_URL"]
    old = (utcnow() - dt.timedelta(days=400)).replace(tzinfo=dt.timezone.utc).timestamp()
    sender = f"old-{uuid.uuid4().hex[:8]}"
    with get_engine(url).begin() as connection:
        for i, kind in enumerate(("user", "bot")):
            connection.execute(insert(EVENTS).values(
                sender_id=sender, type_name=kind, timestamp=old + i, intent_name=None, action_name=None,
                data=json.dumps({"event": kind, "text": f"ancien message {PHONE}", "timestamp": old + i})))
    kept = messenger_request(stack, sender, contact=PHONE_DIGITS, contact_kind="phone", consent=True)
    result = subprocess.run([sys.executable, "-m", "bot.privacy", "purge"], cwd=PROJECT_ROOT, env=stack.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert counts["conversations"] >= 1 and counts["events"] >= 2
    with get_engine(url).connect() as connection:
        assert connection.execute(select(EVENTS.c.id).where(EVENTS.c.sender_id == sender)).all() == []
    assert service(stack).get(kept.id).contact is None
    assert PHONE not in result.stderr and PHONE_DIGITS not in result.stderr


def test_logs_never_show_the_phone_numbers_and_emails_citizens_typed(stack, console):
    logs = stack.log("rasa") + stack.log("actions") + console.log()
    for secret in (PHONE, PHONE_DIGITS):
        assert secret not in logs


# Staff in the browser -----------------------------------------------------------------------------------------
@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def test_staff_filter_assign_and_update_in_the_browser(stack, console, browser):
    citizen = stack.graph.citizen("messenger")
    citizen.say("bonjour")
    wait_text(citizen.texts, "assistant automatique")
    created = messenger_request(stack, citizen.id, category="depot_sauvage", place="chemin des Vignes",
                                description="<script>window.__xss = 1</script> Gravats déposés au bord du chemin")
    console.create_agent("claire", name="Claire")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{console.url}/login")
    page.get_by_label("Identifiant").fill("claire")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(f"{console.url}/")
    page.get_by_role("link", name="Signalements et réclamations").click()
    page.get_by_label("Catégorie").select_option("depot_sauvage")
    page.get_by_label("Statut").select_option("new")
    page.get_by_role("button", name="Filtrer").click()
    row = page.locator(f'tr[data-reference="{created.reference}"]')
    row.wait_for()
    assert "Gravats" in row.inner_text() and page.evaluate("window.__xss") is None
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "07-signalements.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Exporter en CSV").click()
    assert created.reference in download.value.path().read_text(encoding="utf-8-sig")

    row.get_by_role("link", name=created.reference).click()
    page.get_by_label("Attribuer à").select_option("me")
    page.get_by_role("button", name="Attribuer").click()
    page.wait_for_selector("text=Actuellement : Claire")
    page.get_by_label("Nouveau statut").select_option("resolved")
    page.get_by_label("Message à l'usager").fill("Les gravats ont été enlevés ce matin.")
    page.get_by_role("button", name="Changer et prévenir l'usager").click()
    page.locator("#notification-list li[data-status='sent']").wait_for()
    assert page.locator("#request-status").text_content().strip() == "Traité"
    page.screenshot(path=str(SCREENSHOTS / "08-signalement-detail.png"), full_page=True)
    update = wait_text(citizen.texts, "Du nouveau")
    assert created.reference in update and "Les gravats ont été enlevés ce matin." in update
    with session_scope(stack.env["GUICHET_DATABASE_URL"]) as s:
        notification = s.execute(select(RequestNotification).where(RequestNotification.request_id == created.id)).scalar_one()
        assert notification.status == "sent"


def test_staff_pages_need_a_session_the_right_role_and_the_csrf_token(stack, console):
    created = messenger_request(stack, f"psid-{uuid.uuid4().hex[:8]}")
    anonymous = requests.get(f"{console.url}/signalements", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["Location"] == "/login"
    editor = console.client("reports-editor", role="editor")
    assert editor.get(f"{console.url}/signalements", timeout=10).status_code == 403
    agent = console.client("reports-csrf")
    forged = agent.post(f"{console.url}/signalements/{created.id}/status",
                        data={"status": "resolved", "expected": "new"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 403 and service(stack).get(created.id).status == "new"
    assert agent.get(f"{console.url}/signalements/999999", timeout=10).status_code == 404
    bad = console.post(agent, f"/signalements/{created.id}/status", {"status": "bogus", "expected": "new"})
    assert bad.status_code == 400
    bad = console.post(agent, f"/signalements/{created.id}/assign", {"agent": "424242"})
    assert bad.status_code == 400
    huge = console.post(agent, f"/signalements/{created.id}/status",
                        {"status": "resolved", "expected": "new", "message": "x" * 5000})
    assert huge.status_code == 400
    weird = agent.get(f"{console.url}/signalements", params={"since": "<script>", "status": "'; drop"}, timeout=10)
    assert weird.status_code == 200 and "<script>" not in weird.text and "Date invalide" in weird.text
