"""The commune website's chat: a Socket.IO channel and its embeddable widget (static/)."""

from bot.channels.webchat.channel import WebchatInput, WebchatOutput

__all__ = ["WebchatInput", "WebchatOutput"]
