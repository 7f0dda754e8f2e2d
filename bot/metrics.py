"""Prometheus metrics of Guichet's processes (prometheus_client, default registry).

Rasa server (scraped at `/webhooks/metrics/` with `Authorization: Bearer
GUICHET_RASA_TOKEN`, bot/channels/metrics.py): citizen messages per channel, the time
Rasa took to answer them, messages answered by the safety net (no reply: contact details
sent), redeliveries dropped, Graph API errors by code, events waiting in the per-sender
queues. Action server (`/metrics` on its loopback port, rasa_sdk_plugins/): every action
run with its outcome and duration, which counts fallbacks (`action_guichet_fallback`) and
handoffs (`action_human_handoff`).

No label ever holds a conversation id, a text or anything personal. One process per
Rasa replica (`SANIC_WORKERS=1`, the default): each replica is scraped on its own port.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

MESSAGES = Counter("guichet_messages_total", "Citizen messages handed to Rasa", ["channel"])
MESSAGE_SECONDS = Histogram("guichet_message_seconds", "Time Rasa took to handle a citizen message", ["channel"],
                            buckets=LATENCY_BUCKETS)
NO_REPLY = Counter("guichet_no_reply_total", "Messages Rasa did not answer: the safety net sent the contact details",
                   ["channel"])
DUPLICATES = Counter("guichet_webhook_duplicates_total", "Redelivered webhook events dropped", ["channel"])
GRAPH_ERRORS = Counter("guichet_graph_api_errors_total", "Graph API calls failed for good", ["channel", "code"])
RATE_LIMITED = Counter("guichet_rate_limited_total", "Citizen messages dropped: over the per-sender limit",
                       ["channel"])
QUEUED = Gauge("guichet_queued_events", "Webhook events acknowledged and waiting for their sender's turn",
               ["channel"])
INBOX_DURABLE = Gauge("guichet_inbox_durable", "1 if the next webhook event goes to Redis before its acknowledgement, 0 if it stays in memory (no Redis, or Redis unreachable)", ["channel"])
ACTIONS = Counter("guichet_actions_total", "Custom actions run by the action server", ["action", "outcome"])
ACTION_SECONDS = Histogram("guichet_action_seconds", "Custom action duration", ["action"], buckets=LATENCY_BUCKETS)


def exposition() -> tuple[bytes, str]:
    """The text format Prometheus scrapes, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
