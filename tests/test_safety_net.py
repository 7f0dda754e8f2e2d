"""The channel-side safety net, with Rasa's real message and output channel classes."""

from __future__ import annotations

from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ConversationPaused

from bot.channels.safety import MAX_TEXT_CHARS, clean_text, handle_with_safety_net, prepare_text

PHONE = "02 54 00 00 00"


class FakeAgent:
    def __init__(self) -> None:
        self.tracker_store = InMemoryTrackerStore(Domain.empty())


def message(text: str = "bonjour") -> UserMessage:
    return UserMessage(text, CollectingOutputChannel(), "citizen-1")


async def test_a_reply_from_the_bot_passes_through_untouched():
    async def bot(msg: UserMessage) -> None:
        await msg.output_channel.send_text_message(msg.sender_id, "Bonjour !")

    msg = message()
    collector = msg.output_channel
    await handle_with_safety_net(bot, msg, FakeAgent())
    assert [m["text"] for m in collector.messages] == ["Bonjour !"]


async def test_silence_is_replaced_by_the_contact_details():
    async def silent(msg: UserMessage) -> None:
        return None

    msg = message()
    collector = msg.output_channel
    await handle_with_safety_net(silent, msg, FakeAgent())
    assert len(collector.messages) == 1 and PHONE in collector.messages[0]["text"]


async def test_an_exception_in_rasa_still_answers():
    async def broken(msg: UserMessage) -> None:
        raise ConnectionError("action server down")

    msg = message()
    collector = msg.output_channel
    await handle_with_safety_net(broken, msg, FakeAgent())
    assert "problème technique" in collector.messages[0]["text"]


async def test_a_paused_conversation_stays_silent_for_the_agent():
    agent = FakeAgent()
    tracker = await agent.tracker_store.get_or_create_tracker("citizen-1")
    tracker.update(ConversationPaused())
    await agent.tracker_store.save(tracker)

    async def silent(msg: UserMessage) -> None:
        return None

    msg = message()
    collector = msg.output_channel
    await handle_with_safety_net(silent, msg, agent)
    assert collector.messages == []


def test_text_is_cleaned_and_long_text_kept_whole_in_metadata():
    assert clean_text("  bon\x00jour\u200b 👋 ") == "bonjour 👋"
    metadata: dict = {}
    long = "a" * (MAX_TEXT_CHARS + 500)
    assert len(prepare_text(long, metadata)) == MAX_TEXT_CHARS
    assert metadata["full_text"] == long
