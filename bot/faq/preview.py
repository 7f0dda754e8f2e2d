"""How an answer will look to citizens: the commune's facts filled in, then cut into
messages exactly as the channels cut them (the connectors' own splitting functions)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.channels import meta_send, whatsapp_format
from bot.commune import Commune
from bot.faq.text import clean_answer
from bot.faq.validation import Issue, check_answer


@dataclass(frozen=True)
class Preview:
    rendered: str
    characters: int
    # Per channel, the messages the citizen receives, in order.
    messenger: list[str]
    instagram: list[str]
    whatsapp: list[str]
    issues: list[Issue]

    def as_dict(self) -> dict[str, object]:
        return {
            "rendered": self.rendered, "characters": self.characters, "messenger": self.messenger,
            "instagram": self.instagram, "whatsapp": self.whatsapp,
            "issues": [i.as_dict() for i in self.issues],
        }


def preview(answer: str, commune: Commune, topic: str = "") -> Preview:
    """The answer as the action server will send it, and the checks it would fail."""
    answer = clean_answer(answer)
    rendered = commune.render(answer)
    return Preview(
        rendered=rendered,
        characters=len(rendered),
        messenger=[m["text"] for m in meta_send.text_messages(rendered, meta_send.MESSENGER)],
        instagram=[m["text"] for m in meta_send.text_messages(rendered, meta_send.INSTAGRAM)],
        whatsapp=whatsapp_format.split_text(rendered) if rendered else [],
        issues=check_answer(answer, commune, topic),
    )
