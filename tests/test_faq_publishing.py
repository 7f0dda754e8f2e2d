"""Publishing a new model from the console: a worse model is refused, a good one is swapped
into the running Rasa server (the `stack`) while a citizen keeps writing, and a rollback
puts the previous one back. The stack's original model is restored at the end.

To keep training short, these tests train a small configuration (fewer epochs) on part of
the FAQ (two domains), in a temporary copy of data/. The live model they compare with is
the stack's full model, which the two-domain model does not match on the public set: the
swap test opens the quality gate, since it is about the swap; the refusal test then
publishes the same data with the gate closed (its model already trained: no training).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from bot.faq import audit
from bot.faq.publishing import Publisher, PublishOptions, live_model, live_model_name, swap_model
from bot.settings import PROJECT_ROOT
from tests.faq_support import FaqCopy, faq_copy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

FAST_CONFIG = """\
# The project's pipeline with fewer epochs and a smaller DIET: trains in well under a minute.
recipe: default.v1
language: fr
assistant_id: guichet
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
    strip_accents: unicode
    lowercase: true
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 2
    max_ngram: 4
    min_df: 2
    strip_accents: unicode
    lowercase: true
  - name: DIETClassifier
    epochs: 8
    number_of_transformer_layers: 0
    hidden_layers_sizes:
      text: [64]
    entity_recognition: false
    constrain_similarities: true
    random_seed: 42
  - name: bot.nlu.topic_selector.LinearTopicSelector
    retrieval_intent: faq
  - name: FallbackClassifier
    threshold: 0.5
    ambiguity_threshold: 0.05
policies:
  - name: RulePolicy
    core_fallback_threshold: 0.3
    core_fallback_action_name: action_guichet_fallback
    enable_fallback_prediction: true
"""
KEPT_DOMAINS = ("mairie", "etat_civil")


@dataclass
class Workspace:
    faq: FaqCopy
    config: Path
    models: Path

    def options(self, stack, data_dir: Path | None = None, **values) -> PublishOptions:  # noqa: ANN001
        return PublishOptions(
            config=self.config, domain=PROJECT_ROOT / "domain.yml", data_dir=data_dir or self.faq.root / "data",
            catalog_file=self.faq.catalog, models_dir=self.models, rasa_urls=[stack.url], **values,
        )

    def publisher(self, stack, options: PublishOptions) -> Publisher:  # noqa: ANN001
        return Publisher(self.faq.url, stack.env["GUICHET_RASA_TOKEN"], options, env=stack.env)


def keep_two_domains(data: Path) -> None:
    for path in (data / "faq").glob("*.yml"):
        if path.stem not in KEPT_DOMAINS:
            path.unlink()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("publish")
    faq = faq_copy(root)
    keep_two_domains(root / "data")
    config = root / "config-fast.yml"
    config.write_text(FAST_CONFIG, encoding="utf-8")
    return Workspace(faq, config, root / "models")


@pytest.fixture(scope="module")
def restore_original_model(stack) -> Iterator[None]:  # noqa: ANN001
    token = stack.env["GUICHET_RASA_TOKEN"]
    original = live_model_name(stack.url, token)
    assert original == stack.model.name
    try:
        yield
    finally:
        if live_model_name(stack.url, token) != original:
            swap_model([stack.url], token, stack.model)
        assert live_model_name(stack.url, token) == original


class Citizen(threading.Thread):
    """Writes to the running assistant without pause; keeps every failure."""

    def __init__(self, stack) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.stack = stack
        self.stop = threading.Event()
        # (start, end) of every request, to know which ones were in flight during the swap.
        self.sent: list[tuple[float, float]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                response = self.stack.post(f"publish-load-{n % 4}", "horaires de la mairie ?")
                if response.status_code != 200 or not response.json():
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except (requests.RequestException, ValueError) as exc:
                self.failures.append(repr(exc))
            self.sent.append((started, time.monotonic()))
            time.sleep(0.2)


def test_a_good_model_is_swapped_in_under_load_and_rolled_back(stack, workspace: Workspace, restore_original_model):
    token = stack.env["GUICHET_RASA_TOKEN"]
    # An editor changes an answer and adds a question, then publishes.
    editor = workspace.faq.editor
    topic = editor.topic("horaires_mairie")
    editor.save_topic("horaires_mairie", "alice", topic.version, answer=topic.answer + "\nÀ bientôt !",
                      add_examples=["la mairie est-elle ouverte le lundi de pentecôte ?"])
    # The small two-domain candidate scores below the full live model on the public set:
    # this test is about the swap, so the quality gate is opened wide here; the refusal is
    # tested above at tolerance 0.
    options = workspace.options(stack, held_out=True, tolerance=1.0)
    publisher = workspace.publisher(stack, options)
    citizen = Citizen(stack)
    citizen.start()
    swap_window: list[float] = []
    try:
        job = publisher.start("alice")
        phases = []
        while job.running:
            time.sleep(0.5)
            job = publisher.get(job.id)
            if not phases or phases[-1] != job.phase:
                phases.append(job.phase)
            if job.phase == "swapping" and not swap_window:
                swap_window.append(time.monotonic())
        swap_window.append(time.monotonic())
        time.sleep(2)
    finally:
        citizen.stop.set()
        citizen.join(timeout=120)
    assert job.status == "published", job.message
    assert phases[-1] == "done" and "training" in phases and "swapping" in phases
    assert set(job.scores) == {"public", "held_out"}
    assert job.message.startswith("Nouveau modèle en ligne.")
    assert citizen.failures == []
    assert any(start <= swap_window[1] and end >= swap_window[0] for start, end in citizen.sent), (
        "no request in flight during the swap"
    )
    published = Path(job.model_file)
    assert live_model_name(stack.url, token) == published.name
    assert live_model(workspace.models) == published
    assert stack.say("publish-check", "horaires de la mairie ?")

    # One click back to the model that was live before.
    history = publisher.history()
    before = next(p for p in history if p.model_name == stack.model.name)
    back = publisher.wait(publisher.rollback(before.id, "bob").id)
    assert back.status == "published", back.message
    assert live_model_name(stack.url, token) == stack.model.name
    assert publisher.live().id == back.id and live_model(workspace.models) == stack.model
    actions = [c.action for c in audit.history(workspace.faq.url)]
    assert actions[:2] == ["rollback", "publish"]


def test_a_worse_model_is_refused_and_the_live_one_stays(stack, workspace: Workspace, restore_original_model):
    # The workspace's model knows two domains of the FAQ: worse for citizens than the full
    # live model on the public set. After the test above it is already trained (and was
    # live once), so nothing is trained here; alone, this test trains it first.
    publisher = workspace.publisher(stack, workspace.options(stack, held_out=False))
    job = publisher.wait(publisher.start("alice").id)
    assert job.status == "refused", job.message
    assert job.message.startswith("Publication refusée : sur le jeu d'évaluation public, la bonne réponse passerait de")
    assert job.accuracy("public") < job.baseline_scores["public"]["faq_top1"]
    assert live_model_name(stack.url, stack.env["GUICHET_RASA_TOKEN"]) == stack.model.name
    history = publisher.history()
    assert (history[0].kind, history[0].status) == ("publish", "refused")
    live = [p for p in history if p.live]
    assert len(live) == 1 and live[0].model_name == stack.model.name
    assert "Publication refusée" in audit.history(workspace.faq.url)[0].summary
    with pytest.raises(Exception, match="déjà en ligne"):
        publisher.rollback(live[0].id, "alice")
