"""The console's FAQ editor pages: over HTTP, then in Debian's chromium (Playwright),
with screenshots for the editors' guide (docs/screenshots/faq-*.png).

The console runs on a copy of data/ and of the catalog and on its own database (the real
FAQ files are never touched); no Rasa server is needed for these pages.
"""

from __future__ import annotations

import html
import io
import os
import secrets
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from openpyxl import load_workbook

from bot.faq.store import FaqStore
from tests.faq_support import FaqCopy, faq_copy
from tests.handoff_support import PASSWORD, Console, launch_chromium

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def faq(tmp_path_factory: pytest.TempPathFactory) -> FaqCopy:
    return faq_copy(tmp_path_factory.mktemp("faq-console"))


@pytest.fixture(scope="module")
def console(faq: FaqCopy) -> Iterator[Console]:
    env = {
        **os.environ, "GUICHET_DATABASE_URL": faq.url, "GUICHET_FAQ_DIR": str(faq.faq_dir),
        "GUICHET_CATALOG_FILE": str(faq.catalog), "GUICHET_RASA_TOKEN": secrets.token_urlsafe(12),
        "GUICHET_NOW": "2026-03-03T10:00",
    }
    # No Rasa server: the FAQ pages do not need one (Console only reads these three).
    stand_in = types.SimpleNamespace(env=env, workdir=faq.root, url="http://127.0.0.1:9")
    console = Console(stand_in)
    console.start()
    try:
        yield console
    finally:
        console.stop()


def add_unanswered(faq: FaqCopy) -> None:
    """Two citizens the assistant did not understand, written by Rasa's SQLTrackerStore."""
    from tests.test_faq_unanswered import Conversations

    talks = Conversations(faq.url)
    talks.missed("web-1", "horaires de la piscine", ranking=(("equipements_sportifs", 0.3),))
    talks.missed("web-2", "la piscine est ouverte quand ?", channel="whatsapp", ranking=(("equipements_sportifs", 0.2),))
    talks.answered("web-3", "j'ai perdu ma carte d'identité", "cni")


# Over HTTP --------------------------------------------------------------------------------------
def test_faq_pages_are_for_editors_only(console: Console):
    agent = console.client("agathe", role="agent")
    assert agent.get(f"{console.url}/faq", timeout=10).status_code == 403
    assert console.post(agent, "/faq/publish").status_code == 403
    editor = console.client("edith", role="editor")
    page = editor.get(f"{console.url}/faq", timeout=10)
    assert page.status_code == 200 and "Carte nationale d'identité" in html.unescape(page.text)
    anonymous = requests.post(f"{console.url}/faq/publish", headers={"Accept": "application/json"}, timeout=10)
    assert anonymous.status_code == 401


def test_edit_validate_and_conflict_over_http(console: Console, faq: FaqCopy):
    client = console.client("edith", role="editor")
    json_headers = {"Accept": "application/json"}
    topic = client.get(f"{console.url}/faq/topics/passeport", headers=json_headers, timeout=10).json()
    form = {"version": topic["version"], "title": topic["title"], "label": topic["label"],
            "answer": topic["answer"] + "\nÀ bientôt.", "examples": "\n".join(topic["examples"])}
    saved = console.post(client, "/faq/topics/passeport", form)
    assert saved.status_code == 200 and saved.json()["ok"], saved.text
    assert FaqStore(faq.faq_dir, faq.catalog).answer("passeport").endswith("À bientôt.")
    stale = console.post(client, "/faq/topics/passeport", {**form, "answer": topic["answer"] + "\nAutre."})
    assert stale.status_code == 409 and "edith a modifié la réponse" in stale.json()["error"]
    bad = console.post(client, "/faq/topics/passeport", {**form, "version": saved.json()["version"],
                                                           "answer": "Voir {telephon}"})
    assert bad.status_code == 422
    assert any("{telephon}" in i["message"] for i in bad.json()["issues"])
    page = console.post(client, "/faq/topics/passeport", {**form, "version": saved.json()["version"],
                                                            "answer": "Voir {telephon}"}, json_reply=False)
    assert page.status_code == 422 and "Rien n&#39;a été enregistré" in page.text
    audit = client.get(f"{console.url}/faq/audit", headers=json_headers, timeout=10).json()["changes"]
    assert audit[0]["actor"] == "edith" and audit[0]["topic"] == "passeport"


def test_spreadsheet_round_trip_over_http(console: Console, faq: FaqCopy):
    client = console.client("edith", role="editor")
    xlsx = client.get(f"{console.url}/faq/export.xlsx", timeout=30)
    assert xlsx.status_code == 200 and "attachment" in xlsx.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(xlsx.content))
    sheet = book["FAQ"]
    sheet.append(["mairie", "horaires_mairie", "question", "vous ouvrez le 2 janvier ?"])
    edited = io.BytesIO()
    book.save(edited)
    preview = client.post(f"{console.url}/faq/import", data={"csrf_token": client.csrf},
                          files={"file": ("faq.xlsx", edited.getvalue())}, headers={"Accept": "application/json"},
                          timeout=60).json()
    assert preview["applicable"] and preview["summary"]["added_examples"] == 1 and preview["token"]
    assert "vous ouvrez le 2 janvier ?" not in FaqStore(faq.faq_dir, faq.catalog).entries()["horaires_mairie"].examples
    applied = console.post(client, "/faq/import/apply", {"token": preview["token"]})
    assert applied.status_code == 200 and applied.json()["changed"] == ["horaires_mairie"]
    assert "vous ouvrez le 2 janvier ?" in FaqStore(faq.faq_dir, faq.catalog).entries()["horaires_mairie"].examples
    again = console.post(client, "/faq/import/apply", {"token": preview["token"]})
    assert again.status_code == 400 and "expiré" in again.json()["error"]


def test_unanswered_and_dashboard_over_http(console: Console, faq: FaqCopy):
    add_unanswered(faq)
    client = console.client("edith", role="editor")
    groups = client.get(f"{console.url}/faq/unanswered?jours=365", headers={"Accept": "application/json"}, timeout=30).json()
    piscine = next(g for g in groups["groups"] if "horaires de la piscine" in g["texts"])
    assert piscine["count"] == 2 and piscine["suggested_topic"] == "equipements_sportifs"
    board = client.get(f"{console.url}/faq/dashboard?jours=3650", headers={"Accept": "application/json"}, timeout=30).json()
    assert board["messages"] >= 3 and board["top_topics"][0]["topic"] == "cni"


# In the browser -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def login(browser, console: Console, username: str):  # noqa: ANN001, ANN201
    console.create_agent(username, role="editor", name=username.title())
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{console.url}/login")
    page.get_by_label("Identifiant").fill(username)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(f"{console.url}/")
    return page


def shot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_editor_edits_an_answer_in_the_browser(console: Console, faq: FaqCopy, browser):
    page = login(browser, console, "elise")
    page.get_by_role("link", name="FAQ", exact=True).click()
    page.get_by_label("Rechercher").fill("poubelles")
    page.get_by_role("button", name="Rechercher").click()
    shot(page, "faq-01-sujets")
    page.goto(f"{console.url}/faq/topics/horaires_mairie")
    answer = page.get_by_label("Réponse")
    text = answer.input_value().replace("La mairie est fermée les jours fériés.",
                                        "La mairie est fermée les jours fériés et le 26 décembre.")
    answer.fill(text)
    page.get_by_role("button", name="Prévisualiser").click()
    page.locator("#preview").get_by_text("le 26 décembre").wait_for()
    assert "{horaires}" not in page.locator("#preview").inner_text()  # the commune's facts are filled in
    shot(page, "faq-02-apercu")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("Enregistré : la nouvelle réponse").wait_for()
    assert "le 26 décembre" in FaqStore(faq.faq_dir, faq.catalog).answer("horaires_mairie")
    answer = page.get_by_label("Réponse")
    answer.fill(answer.input_value() + "\nAppelez le {telephone_mairie} ou voyez http://exemple.fr")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("Rien n'a été enregistré").wait_for()
    errors = page.locator(".alert--error").last.inner_text()
    assert "{telephone_mairie} n'existe pas" in errors and "http://exemple.fr » doit commencer par https://" in errors
    assert "lien officiel" not in errors  # {site_web} is the official link
    shot(page, "faq-03-erreurs")
    page.close()


def test_two_editors_in_two_browsers_lose_nothing(console: Console, faq: FaqCopy, browser):
    alice, bob = login(browser, console, "alice"), login(browser, console, "bob")
    for page in (alice, bob):
        page.goto(f"{console.url}/faq/topics/contact_mairie")
    alice.get_by_label("Réponse").fill(alice.get_by_label("Réponse").input_value() + "\nRéponse sous 48 h.")
    questions = bob.get_by_label("Questions des usagers")
    questions.fill(questions.input_value() + "\nle standard répond le samedi ?")
    alice.get_by_role("button", name="Enregistrer").click()
    alice.get_by_text("Enregistré").wait_for()
    bob.get_by_role("button", name="Enregistrer").click()
    bob.get_by_text("Enregistré").wait_for()
    entry = FaqStore(faq.faq_dir, faq.catalog).entries()["contact_mairie"]
    assert entry.answer.endswith("Réponse sous 48 h.") and "le standard répond le samedi ?" in entry.examples
    # Bob now rewrites the answer from his old page: refused, his text kept in the form.
    bob.goto(f"{console.url}/faq/topics/contact_mairie")
    alice.goto(f"{console.url}/faq/topics/contact_mairie")
    alice.get_by_label("Réponse").fill(alice.get_by_label("Réponse").input_value() + "\nMerci.")
    alice.get_by_role("button", name="Enregistrer").click()
    alice.get_by_text("Enregistré").wait_for()
    bob.get_by_label("Réponse").fill("Nouvelle réponse de Bob.\nPlus d'infos : {site_web}")
    bob.get_by_role("button", name="Enregistrer").click()
    bob.get_by_text("alice a modifié la réponse").wait_for()
    assert bob.get_by_label("Réponse").input_value().startswith("Nouvelle réponse de Bob.")
    shot(bob, "faq-04-conflit")
    assert FaqStore(faq.faq_dir, faq.catalog).answer("contact_mairie").endswith("Merci.")
    alice.close()
    bob.close()


def test_unanswered_questions_become_examples_in_the_browser(console: Console, faq: FaqCopy, browser):
    add_unanswered(faq)
    page = login(browser, console, "elise")
    page.goto(f"{console.url}/faq/unanswered?jours=365")
    group = page.locator("form.unanswered").filter(has_text="horaires de la piscine")
    group.wait_for()
    shot(page, "faq-05-sans-reponse")
    group.get_by_label("Sujet").select_option("equipements_sportifs")
    group.get_by_role("button", name="Ajouter au sujet").click()
    page.get_by_text("ajoutée(s) au sujet « equipements_sportifs »").wait_for()
    examples = FaqStore(faq.faq_dir, faq.catalog).entries()["equipements_sportifs"].examples
    assert "horaires de la piscine" in examples and "la piscine est ouverte quand ?" in examples
    assert page.locator("form.unanswered").filter(has_text="horaires de la piscine").count() == 0
    page.goto(f"{console.url}/faq/dashboard?jours=365")
    page.locator("#figures").wait_for()
    shot(page, "faq-06-tableau-de-bord")
    page.goto(f"{console.url}/faq/publish")
    page.get_by_role("button", name="Publier maintenant").wait_for()
    shot(page, "faq-07-publier")
    page.goto(f"{console.url}/faq/import")
    shot(page, "faq-08-tableur")
    page.close()

