"""bot/nlu/topic_selector.py: trained, stored and loaded through Rasa's own model storage."""

from pathlib import Path

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.faq.understanding import topic_ranking, understand
from bot.nlu.topic_selector import LinearTopicSelector

EXAMPLES = {
    "faq/cni": ["refaire ma carte d'identité", "carte d identite perdue", "cni expirée que faire",
                "renouveler la carte nationale d'identité", "j'ai perdu ma cni"],
    "faq/passeport": ["faire un passeport", "passeport pour partir en vacances", "renouveler mon passport",
                      "délai pour un passeport", "passeport perdu"],
    "faq/dechets": ["quand passent les poubelles", "jour de collecte des ordures", "ramassage des déchets",
                    "les poubelles jaunes c'est quel jour", "collecte des encombrants"],
}
OTHER = {"greet": ["bonjour", "salut", "bonsoir"]}


def training_data() -> TrainingData:
    messages = [Message(data={"text": text, "intent": "faq", "intent_response_key": key})
                for key, texts in EXAMPLES.items() for text in texts]
    messages += [Message(data={"text": text, "intent": intent}) for intent, texts in OTHER.items() for text in texts]
    responses = {f"utter_{key}": [{"text": f"Réponse {key}"}] for key in EXAMPLES}
    return TrainingData(training_examples=messages, responses=responses)


@pytest.fixture()
def storage(tmp_path: Path) -> LocalModelStorage:
    return LocalModelStorage(tmp_path)


def context() -> ExecutionContext:
    return ExecutionContext(GraphSchema({}), "test")


def trained(storage: LocalModelStorage, resource: Resource) -> LinearTopicSelector:
    selector = LinearTopicSelector.create(LinearTopicSelector.get_default_config(), storage, resource, context())
    selector.train(training_data())
    return selector


def parse(selector: LinearTopicSelector, text: str) -> dict:
    message = Message(data={"text": text})
    selector.process([message])
    return message.as_dict_nlu()


def test_ranks_the_topics_in_rasa_response_selector_shape(storage):
    selector = trained(storage, Resource("topics"))
    result = parse(selector, "jai paumé ma carte didentité")
    output = result["response_selector"]
    assert output["all_retrieval_intents"] == ["faq"]
    assert output["faq"]["response"]["intent_response_key"] == "faq/cni"
    assert output["faq"]["response"]["utter_action"] == "utter_faq/cni"
    assert output["faq"]["response"]["responses"] == [{"text": "Réponse faq/cni"}]
    ranking = topic_ranking(result)
    assert ranking[0][0] == "cni"
    assert {topic for topic, _ in ranking} == {"cni", "passeport", "dechets"}  # only FAQ topics
    assert 0.5 < sum(confidence for _, confidence in ranking) < 1.0  # greet takes the rest
    assert sum(c for _, c in topic_ranking(parse(selector, "bonjour"))) < 0.5
    assert ranking == sorted(ranking, key=lambda item: -item[1])
    assert topic_ranking(parse(selector, "la poubelle jaune passe quand"))[0][0] == "dechets"
    understood = understand({**result, "intent": {"name": "faq", "confidence": 0.9}}, 0.0)
    assert (understood.kind, understood.topic) == ("faq", "cni")


def test_stored_and_loaded_model_predicts_the_same(storage):
    resource = Resource("topics")
    selector = trained(storage, resource)
    loaded = LinearTopicSelector.load(LinearTopicSelector.get_default_config(), storage, resource, context())
    for text in ("passeport urgent", "ramassage poubelles", "🙂 <script>alert(1)</script>", "", "x" * 10_000):
        assert np.allclose(selector.probabilities(text), loaded.probabilities(text))
        assert parse(selector, text)["response_selector"] == parse(loaded, text)["response_selector"]


def test_without_topics_nothing_is_ranked(storage):
    selector = LinearTopicSelector.create({}, storage, Resource("empty"), context())
    only_greetings = TrainingData([Message(data={"text": t, "intent": "greet"}) for t in OTHER["greet"]])
    selector.train(only_greetings)
    assert "response_selector" not in parse(selector, "bonjour")
    missing = LinearTopicSelector.load({}, storage, Resource("never-trained"), context())
    assert topic_ranking(parse(missing, "passeport")) == []
