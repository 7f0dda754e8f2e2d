"""Human handoff: availability, escalations and their queue, tickets and callbacks.

Used by the action server (escalating a conversation) and the agent console (claiming,
replying, handing back). See docs/handoff.md for the life of an escalation.
"""
