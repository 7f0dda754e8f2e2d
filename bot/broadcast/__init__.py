"""Broadcasts: news and alerts written by staff, delivered to the subscribers of topics.

- `service`: drafts, preview, queueing (one delivery row per recipient, unique), report;
- `content`: the message each platform gets (text, link, poll choices);
- `senders`: one send per platform through the channels' own clients and message builders
  (Messenger/Instagram: GraphClient + meta_send + meta_window; WhatsApp: WhatsAppSender +
  whatsapp_format; Telegram: the connector's aiogram output), each returning an `Outcome`;
- `windows`: when a citizen last wrote, read from Rasa's tracker store;
- `worker`: claims due deliveries one by one, within per-platform rates, retries transient
  failures with backoff, never sends a delivery twice, and after a crash checks the
  deliveries left `sending` against the platform's receipts before sending them again.

    python -m bot.broadcast worker      # started by bot/launcher.py
"""
