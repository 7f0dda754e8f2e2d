"""The FAQ data is complete, consistent and not trained on the evaluation set."""

import re
import unicodedata
from collections import Counter

import pytest
import yaml

from bot.commune import load_commune
from bot.faq.evaluation import load_public_set
from bot.faq.store import get_store, parse_examples
from bot.settings import PROJECT_ROOT

MIN_EXAMPLES = 15
MAX_ANSWER_CHARS = 650  # "about 600" once the commune's facts are filled in
URL = re.compile(r"https?://\S+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


store = get_store()
TOPICS = sorted(store.catalog.topics)


def test_catalog_keeps_the_reference_ids():
    # The ids of the reference catalog, which the project may extend but not drop.
    assert len(TOPICS) >= 68
    for topic_id in ("cni", "passeport", "urgence", "reclamation", "collecte_ordures", "horaires_mairie"):
        assert topic_id in TOPICS


def test_every_faq_file_topic_is_in_the_catalog():
    assert set(store.entries()) <= set(TOPICS)


@pytest.mark.parametrize("topic_id", TOPICS)
def test_every_topic_has_examples_and_an_answer(topic_id):
    entry = store.entries().get(topic_id)
    assert entry is not None, f"faq/{topic_id} has no training data"
    assert len(set(entry.examples)) >= MIN_EXAMPLES
    assert entry.answer.strip()


@pytest.mark.parametrize("topic_id", TOPICS)
def test_answers_are_short_linked_and_use_known_facts(topic_id):
    commune = load_commune()
    answer = store.entries()[topic_id].answer
    assert commune.check(answer) == [], "unknown placeholder"
    rendered = commune.render(answer)
    assert len(rendered) <= MAX_ANSWER_CHARS, f"{len(rendered)} characters"
    assert URL.search(rendered), "no official link"
    assert "{" not in rendered and "}" not in rendered


def test_answers_do_not_hard_code_the_commune_facts():
    commune = load_commune()
    facts = [commune.phone, commune.name, commune.facts["mairie"]["adresse"]]
    for topic_id, entry in store.entries().items():
        for fact in facts:
            assert fact not in entry.answer, f"{topic_id} hard-codes {fact!r}"


def test_no_example_is_shared_by_two_topics():
    seen = Counter(normalise(e) for entry in store.entries().values() for e in set(entry.examples))
    assert [text for text, count in seen.items() if count > 1] == []


def test_training_data_contains_no_evaluation_sentence():
    examples = set()
    for path in (PROJECT_ROOT / "data").rglob("*.yml"):
        for item in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("nlu") or []:
            examples |= {normalise(e) for e in parse_examples(item.get("examples", ""))}
    assert len(examples) > 1500
    leaked = [case.text for case in load_public_set() if normalise(case.text) in examples]
    assert leaked == []
