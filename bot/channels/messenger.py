"""`messenger`: the Facebook Messenger connector (Rasa's own `facebook` channel is not usable).

Rasa 3.6's `facebook` channel checks only the legacy SHA-1 signature, reads only the first
event of a batched POST, answers Meta only after full processing, treats attachment
echoes as citizen messages, crashes on `standby`, never de-duplicates redeliveries, sends
through a blocking client on Graph API v2.12 and always sends `RESPONSE` (no
`HUMAN_AGENT` tag). This one does all of that right; the shared machinery is in
`meta_channel.py` (webhook, windows, sending), `meta_events.py` (reading webhooks) and
`meta_send.py` (building messages).

Messenger specifics: `object: page`; text < 2000 characters (longer answers are split at
paragraph/sentence boundaries); buttons as quick replies (<= 13, titles <= 20 characters)
or a button template when links are involved; the Get Started button (payload
`GET_STARTED`) greets; `python -m bot.channels.messenger_setup` configures it.

Environment: GUICHET_MESSENGER_PAGE_TOKEN, GUICHET_MESSENGER_APP_SECRET,
GUICHET_MESSENGER_VERIFY_TOKEN, GUICHET_GRAPH_API_URL, GUICHET_GRAPH_API_VERSION
(see `.env.example`). Registered in credentials.yml as `bot.channels.messenger.MessengerInput`.

GET  /webhooks/messenger/webhook     Meta's verification handshake
POST /webhooks/messenger/webhook     Meta's signed webhooks
GET  /webhooks/messenger/deliveries?recipient=<psid> undelivered messages (bearer GUICHET_RASA_TOKEN)
"""

from __future__ import annotations

from bot.channels import meta_send
from bot.channels.meta_channel import MetaConfig, MetaInput, MetaOutput
from bot.settings import Settings


class MessengerOutput(MetaOutput):
    channel_name = "messenger"


class MessengerInput(MetaInput):
    channel_name = "messenger"
    webhook_object = "page"
    limits = meta_send.MESSENGER
    output_class = MessengerOutput
    env_names = "GUICHET_MESSENGER_PAGE_TOKEN, GUICHET_MESSENGER_APP_SECRET, GUICHET_MESSENGER_VERIFY_TOKEN"

    @classmethod
    def config_from_settings(cls, settings: Settings) -> MetaConfig:
        return MetaConfig.from_settings(
            settings, settings.messenger_page_token, settings.messenger_app_secret, settings.messenger_verify_token
        )
