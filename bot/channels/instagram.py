"""`instagram`: Instagram messaging (through the Facebook Page), its own channel.

Same webhook shape as Messenger (`object: instagram`, `entry[].messaging[]`, the IGSID in
`sender.id`) and the same Send API (`POST /me/messages` with the Page token), so all the
machinery is shared with Messenger (`meta_channel.py`). Instagram differences: text is
limited to 1000 UTF-8 *bytes* (longer answers are split), there are no button templates
(buttons become quick replies, links are written in the text), reads arrive as
`messaging_seen` (ignored like every non-message event), and only the `HUMAN_AGENT` tag
exists past the 24-hour window.

Environment: GUICHET_INSTAGRAM_ACCESS_TOKEN, GUICHET_INSTAGRAM_APP_SECRET,
GUICHET_INSTAGRAM_VERIFY_TOKEN (each defaults to its Messenger counterpart),
GUICHET_GRAPH_API_URL, GUICHET_GRAPH_API_VERSION. Registered in credentials.yml as
`bot.channels.instagram.InstagramInput`.

GET/POST /webhooks/instagram/webhook, GET /webhooks/instagram/deliveries?recipient=<igsid>
"""

from __future__ import annotations

from bot.channels import meta_send
from bot.channels.meta_channel import MetaConfig, MetaInput, MetaOutput
from bot.settings import Settings


class InstagramOutput(MetaOutput):
    channel_name = "instagram"


class InstagramInput(MetaInput):
    channel_name = "instagram"
    webhook_object = "instagram"
    limits = meta_send.INSTAGRAM
    output_class = InstagramOutput
    env_names = "GUICHET_INSTAGRAM_ACCESS_TOKEN, GUICHET_INSTAGRAM_APP_SECRET, GUICHET_INSTAGRAM_VERIFY_TOKEN"

    @classmethod
    def config_from_settings(cls, settings: Settings) -> MetaConfig:
        return MetaConfig.from_settings(
            settings, settings.instagram_access_token, settings.instagram_app_secret, settings.instagram_verify_token
        )
