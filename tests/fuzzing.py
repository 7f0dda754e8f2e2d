"""Fuzzed webhook bodies (hypothesis): valid Messenger, WhatsApp and Telegram payloads
with random parts replaced by arbitrary JSON (wrong types, emoji, huge strings, nesting).
Used by test_fuzz_webhooks.py (parsers, the stack) and test_cluster.py (through nginx)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.simulators import whatsapp_cloud
from tests.simulators.graph_api import attachment_item, postback_item, quick_reply_item, text_item, webhook

PAGE, PSID = "1100000000000001", "7700000000000001"
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64), st.floats(allow_nan=False),
    st.text(max_size=50), st.sampled_from(["", "🤖" * 500, "<script>alert(1)</script>", "x" * 5000, "/faq{", "\x00"]),
)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def meta_template(page: str = PAGE, psid: str = PSID) -> dict[str, Any]:
    items = [text_item(psid, page, "bonjour"), quick_reply_item(psid, page, "Oui", "/affirm"),
             postback_item(psid, page, "Menu", "/greet"), attachment_item(psid, page, "image", "https://cdn.example/a.jpg")]
    return webhook("page", [{"id": page, "time": 1, "messaging": items}])


def whatsapp_template() -> dict[str, Any]:
    sim = whatsapp_cloud.WhatsAppCloudSimulator(app_secret="x")
    return sim.envelope(messages=[whatsapp_cloud.text_message("33612345678", "bonjour"),
                                  whatsapp_cloud.location_message("33612345678", 48.8, 2.3)],
                        statuses=[whatsapp_cloud.status_item("wamid.X", "33612345678", "delivered")])


def telegram_template() -> dict[str, Any]:
    return {"update_id": 7, "message": {"message_id": 1, "date": 1, "text": "bonjour",
                                        "from": {"id": 42, "is_bot": False, "first_name": "Camille"},
                                        "chat": {"id": 42, "type": "private", "first_name": "Camille"}}}


def mutate(data: st.DataObject, node: Any, depth: int = 0) -> Any:
    """`node` with some of its parts (about one in six) replaced by arbitrary JSON."""
    if depth and data.draw(st.integers(0, 5)) == 0:
        return data.draw(JSON)
    if isinstance(node, dict):
        mutated = {key: mutate(data, value, depth + 1) for key, value in node.items()}
        if data.draw(st.integers(0, 7)) == 0:
            mutated[data.draw(st.text(max_size=10))] = data.draw(JSON)
        return mutated
    if isinstance(node, list):
        return [mutate(data, value, depth + 1) for value in node]
    return node


def fuzzed_bodies(template: dict[str, Any], count: int) -> list[Any]:
    """`count` copies of `template`, each mutated by hypothesis."""
    bodies: list[Any] = []

    @settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        bodies.append(mutate(data, template))

    collect()
    return bodies
