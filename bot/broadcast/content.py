"""The message a broadcast becomes: one text (headline, body, how to stop), an optional
link and, for a consultation, its choices as buttons."""

from __future__ import annotations

from dataclasses import dataclass

from bot.broadcast.service import BroadcastInfo
from bot.outreach import texts
from bot.outreach.polls import PollInfo, vote_buttons

MAX_TEMPLATE_PARAMETER = 1024


@dataclass(frozen=True)
class Content:
    text: str
    link: str
    buttons: tuple[dict[str, str], ...]

    @property
    def link_buttons(self) -> list[dict[str, str]]:
        return [{"title": texts.BROADCAST_LINK, "url": self.link}] if self.link else []

    def one_line(self) -> str:
        """For a WhatsApp template parameter: no new lines, tabs or runs of spaces."""
        text = " · ".join(part.strip() for part in self.text.splitlines() if part.strip())
        if self.link:
            text += f" · {self.link}"
        if self.buttons:
            text += f" · {texts.POLL_BROADCAST_HINT}"
        text = " ".join(text.split())
        return text if len(text) <= MAX_TEMPLATE_PARAMETER else text[: MAX_TEMPLATE_PARAMETER - 1] + "…"


def build(broadcast: BroadcastInfo, poll: PollInfo | None = None) -> Content:
    lines = [f"📢 {broadcast.title}", broadcast.body]
    buttons: tuple[dict[str, str], ...] = ()
    if poll is not None:
        lines.append(f"🗳️ {poll.question}")
        buttons = tuple(vote_buttons(poll))
    lines += ["", texts.BROADCAST_FOOTER]
    return Content("\n".join(lines), broadcast.link, buttons)
