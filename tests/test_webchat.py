"""The website chat: the widget in a real browser (Debian's chromium through Playwright)
against the real stack, and the Socket.IO channel's own rules.

Screenshots for the documentation are written to docs/screenshots/.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
import requests
import socketio
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.channels.webchat.channel import EMPTY_MESSAGE, INVALID_MESSAGE
from bot.channels.webchat.transcript import transcript
from bot.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
PHONE = "02 54 00 00 00"
OPEN = re.compile("Une question")
DIALOG = "Assistant de la mairie de Bellerive-sur-Ondine"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Visit:
    """A page of the demo site, recording the JavaScript dialogs and errors it raises."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(url)

    @property
    def toggle(self):
        return self.page.get_by_role("button", name=OPEN)

    @property
    def dialog(self):
        return self.page.get_by_role("dialog", name=DIALOG)

    @property
    def input(self):
        return self.page.get_by_role("textbox", name="Votre message")

    def bot_messages(self):
        return self.page.locator(".gw-msg--bot .gw-bubble")

    def open_and_wait_for_greeting(self) -> None:
        self.toggle.click()
        expect(self.bot_messages().first).to_contain_text("assistant automatique", timeout=60_000)

    def ask(self, text: str, expected: str) -> None:
        count = self.bot_messages().count()
        self.input.fill(text)
        self.input.press("Enter")
        expect(self.bot_messages()).to_have_count(count + 1, timeout=60_000)
        expect(self.bot_messages().last).to_contain_text(expected)

    def session_id(self) -> str:
        return self.page.evaluate("sessionStorage.getItem('guichet-webchat.session')")


@pytest.fixture
def visit(browser: Browser, stack) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR")
    yield Visit(context.new_page(), f"{stack.url}/webhooks/webchat/demo")
    context.close()


def test_keyboard_only_open_ask_answer_close(visit: Visit):
    page = visit.page
    expect(visit.toggle).to_have_attribute("aria-expanded", "false")
    for _ in range(40):  # Tab through the page until the widget's button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('gw-toggle')"):
            break
    else:
        pytest.fail("the widget's button is not reachable with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # visible focus
    page.keyboard.press("Enter")
    expect(visit.dialog).to_be_visible()
    expect(visit.toggle).to_have_attribute("aria-expanded", "true")
    expect(visit.input).to_be_focused()
    expect(visit.bot_messages().first).to_contain_text("assistant automatique", timeout=60_000)

    page.keyboard.type("c'est quoi les horaires de la mairie ?")
    page.keyboard.press("Enter")
    expect(page.locator(".gw-msg--user .gw-bubble").last).to_have_text("c'est quoi les horaires de la mairie ?")
    expect(visit.bot_messages()).to_have_count(2, timeout=60_000)
    expect(visit.bot_messages().last).to_contain_text("8 h 30")
    live = page.locator("[aria-live='polite']")
    expect(live).to_contain_text("8 h 30")
    expect(visit.input).to_be_focused()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "webchat-desktop.png"))

    page.keyboard.press("Escape")
    expect(visit.dialog).to_be_hidden()
    expect(page.locator(".gw-toggle")).to_be_focused()
    expect(page.locator(".gw-toggle")).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")  # reopens, the conversation is still there
    expect(visit.bot_messages()).to_have_count(2)
    assert not visit.dialogs and not visit.errors


def test_quick_replies_are_real_buttons(visit: Visit):
    visit.open_and_wait_for_greeting()
    replies = visit.page.get_by_role("group", name="Réponses proposées")
    agent = replies.get_by_role("button", name="Parler à un agent")
    expect(agent).to_be_visible()
    agent.focus()
    visit.page.keyboard.press("Enter")
    expect(visit.page.locator(".gw-msg--user .gw-bubble").last).to_have_text("Parler à un agent")
    expect(visit.bot_messages()).to_have_count(2, timeout=60_000)
    expect(visit.bot_messages().last).to_contain_text(PHONE)
    # the phone number became a link a phone can call
    expect(visit.bot_messages().last.get_by_role("link", name=PHONE)).to_have_attribute("href", "tel:+33254000000")
    # the used quick replies are gone from the greeting
    expect(visit.page.locator(".gw-msg--bot").first.locator(".gw-replies")).to_have_count(0)
    expect(visit.input).to_be_focused()


def test_fallback_suggestions_are_buttons(visit: Visit):
    visit.open_and_wait_for_greeting()
    visit.ask("zrgl bfft qwxx", "Je ne suis pas sûr")
    group = visit.page.get_by_role("group", name="Réponses proposées")
    expect(group.get_by_role("button").last).to_have_text("Parler à un agent")


def test_html_and_script_are_shown_as_text(visit: Visit, stack):
    visit.open_and_wait_for_greeting()
    attack = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    visit.ask(attack, "")
    expect(visit.page.locator(".gw-msg--user .gw-bubble").last).to_have_text(attack)
    # an agent's message with markup and links, through Rasa's HTTP API
    text = (
        "Bonjour <b>Camille</b> <img src=x onerror=alert(3)> voir https://www.service-public.fr/particuliers. "
        "et javascript:alert(4)"
    )
    response = requests.post(
        f"{stack.url}/conversations/web-{visit.session_id()}/tracker/events",
        params={"token": stack.env["GUICHET_RASA_TOKEN"], "output_channel": "webchat", "execute_side_effects": "true"},
        json={"event": "bot", "text": text},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    last = visit.bot_messages().last
    expect(last).to_contain_text("<b>Camille</b> <img src=x onerror=alert(3)>")
    links = last.get_by_role("link")
    expect(links).to_have_count(1)
    expect(links.first).to_have_attribute("href", "https://www.service-public.fr/particuliers")
    expect(links.first).to_have_attribute("rel", "noopener noreferrer")
    assert visit.page.locator(".gw img, .gw script, .gw b").count() == 0
    assert not visit.dialogs and not visit.errors


def test_a_reload_keeps_the_conversation(visit: Visit):
    visit.open_and_wait_for_greeting()
    visit.ask("horaires de la mairie", "8 h 30")
    session = visit.session_id()
    visit.page.reload()
    expect(visit.dialog).to_be_visible()
    expect(visit.bot_messages()).to_have_count(2, timeout=30_000)
    expect(visit.page.locator(".gw-msg--user .gw-bubble")).to_have_text(["horaires de la mairie"])
    assert visit.session_id() == session
    visit.ask("merci", "")  # the same conversation goes on
    assert visit.session_id() == session


def test_empty_message_is_not_sent(visit: Visit):
    visit.open_and_wait_for_greeting()
    visit.input.press("Enter")
    expect(visit.page.get_by_role("status")).to_have_text("Écrivez votre question avant de l'envoyer.")
    expect(visit.page.locator(".gw-msg--user")).to_have_count(0)


def test_screen_reader_names_roles_and_states(visit: Visit):
    expect(visit.toggle).to_have_attribute("aria-controls", "gw-panel")
    visit.open_and_wait_for_greeting()
    tree = visit.page.locator(".gw").aria_snapshot()
    for line in (
        f'dialog "{DIALOG}"',
        f'heading "{DIALOG}" [level=2]',
        'button "Fermer la discussion"',
        'list "Conversation"',
        'group "Réponses proposées"',
        'textbox "Votre message"',
        'button "Envoyer"',
    ):
        assert line in tree, f"{line!r} missing from the accessibility tree:\n{tree}"
    assert "L'assistant :" in tree  # who speaks, for screen readers
    assert visit.page.locator("[aria-live='polite']").count() == 1
    expect(visit.dialog).to_have_attribute("aria-describedby", "gw-notice")
    assert visit.page.evaluate("document.documentElement.lang") == "fr"
    assert visit.page.locator(".gw").get_attribute("lang") == "fr"


def _luminance(rgb: tuple[float, ...]) -> float:
    channels = [c / 255 for c in rgb[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(foreground: str, background: str) -> float:
    values = [tuple(float(v) for v in re.findall(r"[\d.]+", color)) for color in (foreground, background)]
    lighter, darker = sorted((_luminance(v) for v in values), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_text_contrast_meets_wcag_aa(visit: Visit):
    visit.open_and_wait_for_greeting()
    for selector in (".gw-msg--bot .gw-bubble", ".gw-reply", ".gw-send", ".gw-notice", ".gw-title", ".gw-close", ".gw-label"):
        colors = visit.page.locator(selector).first.evaluate(
            """element => {
                let background = 'rgba(0, 0, 0, 0)', node = element;
                while (node && /rgba\\(.*, 0\\)$/.test(background)) {
                    background = getComputedStyle(node).backgroundColor; node = node.parentElement;
                }
                return [getComputedStyle(element).color, background];
            }"""
        )
        assert _contrast(*colors) >= 4.5, (selector, colors)


def test_phone_viewport(browser: Browser, stack):
    context = browser.new_context(
        viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True, locale="fr-FR"
    )
    try:
        visit = Visit(context.new_page(), f"{stack.url}/webhooks/webchat/demo")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        visit.page.screenshot(path=str(SCREENSHOTS / "webchat-phone-closed.png"))
        visit.toggle.tap()
        expect(visit.bot_messages().first).to_contain_text("assistant automatique", timeout=60_000)
        box = visit.dialog.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 360 and box["height"] <= 740
        visit.ask("je dois refaire ma carte d'identité", "")
        assert visit.page.evaluate("document.documentElement.scrollWidth") <= 360
        send = visit.page.get_by_role("button", name="Envoyer").bounding_box()
        assert send and send["height"] >= 24 and send["x"] + send["width"] <= 360  # reachable target
        visit.page.screenshot(path=str(SCREENSHOTS / "webchat-phone.png"))
        assert not visit.errors
    finally:
        context.close()


# ------------------------------------------------------- the Socket.IO channel
def test_connections_from_unknown_sites_are_refused(stack):
    url = f"{stack.url}/socket.io/?EIO=4&transport=polling"
    assert requests.get(url, headers={"Origin": "https://pirate.example"}, timeout=10).status_code == 400
    assert requests.get(url, headers={"Origin": stack.url}, timeout=10).status_code == 200
    assert requests.get(url, timeout=10).status_code == 200


def exchange(url: str, auth: dict | None, *messages: object) -> tuple[str, list[tuple[str, object]]]:
    """Connects like the widget, sends `messages` one at a time (each waits for its
    answer or error), returns the session id and every event received. Long polling:
    python-engineio's WebSocket client needs a newer aiohttp than Rasa's."""
    client = socketio.Client()
    events: list[tuple[str, object]] = []
    arrived = {name: threading.Event() for name in ("session_confirm", "history", "bot_uttered", "guichet_error")}
    answered = threading.Event()

    def recorder(name: str):
        def record(data: object = None) -> None:
            events.append((name, data))
            arrived[name].set()
            if name in ("bot_uttered", "guichet_error"):
                answered.set()
        return record

    for name in arrived:
        client.on(name, recorder(name))
    client.connect(url, auth=auth, socketio_path="/socket.io", transports=["polling"])
    try:
        client.emit("session_request", {})
        assert arrived["history"].wait(30), "no history event"
        for message in messages:
            answered.clear()
            client.emit("user_uttered", message)
            assert answered.wait(60), f"no answer to {message!r}"
    finally:
        # Engine.IO's CLOSE (the server ends the session) without waiting for the pending
        # long poll to return, which a plain disconnect() does (up to the 25 s ping interval).
        client.eio.disconnect(abort=True)
    session = next(data for name, data in events if name == "session_confirm")
    return str(session), events


def test_bad_payloads_get_a_clear_error_and_sessions_cannot_be_chosen(stack):
    session, events = exchange(
        stack.url, {"session_id": "telegram-12345"}, "pas un objet", {"message": 42}, {"message": " \u200b "}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", session)  # a forged id was replaced by a fresh one
    errors = [data["message"] for name, data in events if name == "guichet_error"]
    assert errors == [INVALID_MESSAGE, INVALID_MESSAGE, EMPTY_MESSAGE]
    assert ("history", {"messages": []}) in events


def test_a_typed_slash_is_not_an_intent_and_history_is_replayed(stack):
    session, _ = exchange(stack.url, None, {"message": "/out_of_scope"})
    quick_reply = {"message": "/human_handoff", "quick_reply": True, "metadata": {"display": "Parler à un agent"}}
    again_session, again = exchange(stack.url, {"session_id": session}, quick_reply)
    assert again_session == session
    history = next(data for name, data in again if name == "history")["messages"]
    # typed, the slash was dropped: Rasa read words, not the `out_of_scope` intent
    assert history[0] == {"sender": "user", "text": "out_of_scope"} and history[1]["sender"] == "bot"
    # a quick reply carries its payload (the handoff intent) and is shown by its title
    assert PHONE in next(data for name, data in again if name == "bot_uttered")["text"]
    _, third = exchange(stack.url, {"session_id": session})
    shown = next(data for name, data in third if name == "history")["messages"]
    assert {"sender": "user", "text": "Parler à un agent"} in shown


def test_allowed_origins_come_from_the_settings():
    from dataclasses import replace

    from bot.channels.webchat import WebchatInput
    from bot.settings import get_settings

    channel = WebchatInput(replace(get_settings(), webchat_origins=("https://www.bellerive.fr",)))
    environ = {"HTTP_HOST": "assistant.bellerive.fr"}
    assert channel._origin_allowed("https://www.bellerive.fr", environ)
    assert channel._origin_allowed("https://assistant.bellerive.fr", environ)
    assert not channel._origin_allowed("https://www.bellerive.fr.pirate.example", environ)
    assert not channel._origin_allowed("http://www.bellerive.fr", environ)
    anyone = WebchatInput(replace(get_settings(), webchat_origins=("*",)))
    assert anyone._origin_allowed("https://ailleurs.example", environ)


def test_transcript_hides_payloads_and_keeps_the_last_quick_replies():
    from rasa.shared.core.events import BotUttered, UserUttered

    events = [
        UserUttered("/greet", metadata={}),
        BotUttered("Bonjour", data={"buttons": [{"title": "Parler à un agent", "payload": "/human_handoff"}]}),
        UserUttered("/human_handoff", metadata={"display": "Parler à un agent"}),
        BotUttered("Appelez le 02 54 00 00 00", data={"buttons": [{"title": "Merci", "payload": "/thank"}]}),
    ]
    assert transcript(events) == [
        {"sender": "bot", "text": "Bonjour"},
        {"sender": "user", "text": "Parler à un agent"},
        {"sender": "bot", "text": "Appelez le 02 54 00 00 00",
         "quick_replies": [{"title": "Merci", "payload": "/thank"}]},
    ]
