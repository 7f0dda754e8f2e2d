"""Checks run before any FAQ change is saved. Messages are in French: editors read them.

Errors block the save; warnings are shown and do not. The rules follow
docs/faq-format.md and tests/test_faq_data.py: an answer is not empty, uses only known
placeholders (`Commune.check`), links are well-formed https, it ends with an official
link and is at most ~600 characters once filled in; a topic has at least 15 examples,
none shared with another topic once case, accents and punctuation are ignored, and none
taken from the public evaluation set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from bot.commune import PLACEHOLDER, Commune, CommuneError
from bot.faq.documents import TopicData
from bot.faq.text import clean_line, normalise, token_bag

MIN_EXAMPLES = 15
# "About 600 characters" once the commune's facts are filled in: a warning above 600, an
# error above 650 (the limit tests/test_faq_data.py holds every answer to).
SOFT_ANSWER_CHARS = 600
MAX_ANSWER_CHARS = 650
MAX_EXAMPLE_CHARS = 300
MAX_TITLE_CHARS = 120
MAX_LABEL_CHARS = 20  # Messenger quick replies
NEAR_DUPLICATE = 0.85  # char n-gram cosine similarity ("horaires mairie" vs "mairie ouverte samedi": 0.6)
TOPIC_ID = re.compile(r"^[a-z][a-z0-9_]{1,48}$")
DOMAIN_ID = re.compile(r"^[a-z][a-z0-9_]{1,48}$")
URL = re.compile(r"(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)[^\s<>\"'«»]+")
ENTITY_SYNTAX = re.compile(r"\[[^\]]*\]\s*[({]")
HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
TRAILING = ".,;:!?)]»"


@dataclass(frozen=True)
class Issue:
    level: str  # error · warning
    field: str  # answer · examples · title · label · id · domain
    message: str
    topic: str = ""

    @property
    def blocking(self) -> bool:
        return self.level == "error"

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "field": self.field, "message": self.message, "topic": self.topic}


def errors(issues: Iterable[Issue]) -> list[Issue]:
    return [i for i in issues if i.blocking]


# Answers -----------------------------------------------------------------------------------
def links(text: str) -> list[str]:
    return [match.rstrip(TRAILING) for match in URL.findall(text)]


def link_problem(url: str) -> str | None:
    if url.lower().startswith("www."):
        return f"Le lien « {url} » doit commencer par https://"
    parts = urlsplit(url)
    if parts.scheme.lower() == "http":
        return f"Le lien « {url} » doit commencer par https:// (lien non sécurisé)"
    if parts.scheme.lower() != "https":
        return f"Le lien « {url} » n'est pas une adresse web https://"
    host = parts.hostname or ""
    if "." not in host or not re.fullmatch(r"[a-z0-9.-]+", host) or host.startswith(".") or ".." in host:
        return f"Le lien « {url} » n'a pas une adresse de site valide"
    return None


def _render_quietly(answer: str, commune: Commune) -> str:
    """The answer with the commune's facts filled in; unknown placeholders (reported
    separately) become empty instead of being logged as an error."""

    def fill(match: re.Match[str]) -> str:
        try:
            return commune.value(match.group(1))
        except CommuneError:
            return ""

    return PLACEHOLDER.sub(fill, answer)


def check_answer(answer: str, commune: Commune, topic: str = "") -> list[Issue]:
    issues: list[Issue] = []

    def add(level: str, message: str) -> None:
        issues.append(Issue(level, "answer", message, topic))

    if not answer.strip():
        add("error", "La réponse est vide.")
        return issues
    unknown = commune.check(answer)
    for key in dict.fromkeys(unknown):
        add("error", f"Le champ {{{key}}} n'existe pas dans les informations de la commune "
                     "(voir la liste des champs dans le guide).")
    if "{" in PLACEHOLDER.sub("", answer) or "}" in PLACEHOLDER.sub("", answer):
        add("error", "Accolade isolée ou champ mal écrit : un champ s'écrit en minuscules entre "
                     "accolades, par exemple {telephone} ou {tarifs.cantine}.")
    for url in links(answer):
        problem = link_problem(url)
        if problem:
            add("error", problem)
    rendered = _render_quietly(answer, commune)
    if not any(link_problem(url) is None for url in links(rendered)):
        add("error", "Ajoutez le lien officiel en fin de réponse (« Plus d'infos : https://… »).")
    length = len(rendered)
    if length > MAX_ANSWER_CHARS:
        add("error", f"La réponse fait {length} caractères une fois les champs remplis : "
                     f"{MAX_ANSWER_CHARS} au plus (visez {SOFT_ANSWER_CHARS}).")
    elif length > SOFT_ANSWER_CHARS:
        add("warning", f"La réponse fait {length} caractères une fois les champs remplis : "
                       f"visez {SOFT_ANSWER_CHARS} au plus.")
    if HTML_TAG.search(answer):
        add("warning", "Les balises HTML ne sont pas interprétées : elles s'afficheront telles quelles.")
    return issues


# Examples ----------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _public_keys(path: Path, _mtime: float) -> frozenset[str]:
    from bot.faq.evaluation import load_public_set

    return frozenset(normalise(case.text) for case in load_public_set(path))


def public_set_keys(path: Path | None) -> frozenset[str]:
    if path is None or not path.exists():
        return frozenset()
    return _public_keys(path, path.stat().st_mtime)


class ExampleIndex:
    """Every example of every topic, to find duplicates and near-duplicates across topics."""

    def __init__(self, topics: dict[str, TopicData]) -> None:
        self.topics = topics
        self.by_key: dict[str, set[str]] = {}
        self.by_bag: dict[str, set[str]] = {}
        self.rows: list[tuple[str, str]] = []  # (topic, text)
        for topic in topics.values():
            for text in topic.examples:
                self.by_key.setdefault(normalise(text), set()).add(topic.id)
                self.by_bag.setdefault(token_bag(text), set()).add(topic.id)
                self.rows.append((topic.id, text))
        self._matrix = None
        self._vectorizer = None

    def title(self, topic_id: str) -> str:
        topic = self.topics.get(topic_id)
        return f"« {topic.title} » ({topic_id})" if topic and topic.title else f"« {topic_id} »"

    def near(self, texts: list[str], topic_id: str) -> dict[str, tuple[str, str, float]]:
        """For each text, the most similar example of another topic if above NEAR_DUPLICATE."""
        if not texts or not self.rows:
            return {}
        from sklearn.feature_extraction.text import TfidfVectorizer

        if self._matrix is None:
            self._vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), preprocessor=normalise)
            self._matrix = self._vectorizer.fit_transform([text for _, text in self.rows])
        similarity = (self._vectorizer.transform(texts) @ self._matrix.T).toarray()
        found = {}
        for i, text in enumerate(texts):
            for j in similarity[i].argsort()[::-1][:5]:
                other_topic, other_text = self.rows[j]
                if other_topic != topic_id and similarity[i][j] >= NEAR_DUPLICATE:
                    found[text] = (other_topic, other_text, float(similarity[i][j]))
                    break
        return found


def clean_examples(examples: Iterable[str]) -> tuple[list[str], list[str]]:
    """Cleaned, non-empty, first of each normalised duplicate; and the duplicates dropped."""
    kept, dropped, seen = [], [], set()
    for raw in examples:
        text = clean_line(raw)
        if not text:
            continue
        key = normalise(text)
        if key in seen or not key:
            dropped.append(text)
            continue
        seen.add(key)
        kept.append(text)
    return kept, dropped


def check_examples(
    topic_id: str,
    examples: list[str],
    index: ExampleIndex,
    public_keys: frozenset[str] = frozenset(),
    new: Iterable[str] | None = None,
    dropped: Iterable[str] = (),
    minimum: int = MIN_EXAMPLES,
) -> list[Issue]:
    """`new`: the examples this change adds (near-duplicate warnings only for them)."""
    issues: list[Issue] = []

    def add(level: str, message: str) -> None:
        issues.append(Issue(level, "examples", message, topic_id))

    dropped = list(dropped)
    if dropped:
        add("warning", "Doublons retirés (même question aux accents, majuscules ou ponctuation près) : "
                       + ", ".join(f"« {t} »" for t in dropped[:5]) + ("…" if len(dropped) > 5 else ""))
    if len(examples) < minimum:
        add("error", f"Il faut au moins {minimum} exemples de questions différentes "
                     f"(il y en a {len(examples)}) : le modèle apprend à reconnaître le sujet à partir d'eux.")
    flagged: set[str] = set()
    for text in examples:
        others = index.by_key.get(normalise(text), set()) - {topic_id}
        if others:
            flagged.add(text)
            add("error", f"« {text} » est déjà un exemple du sujet {index.title(sorted(others)[0])} : "
                         "une même question ne peut pas mener à deux réponses.")
            continue
        others = index.by_bag.get(token_bag(text), set()) - {topic_id}
        if others:
            flagged.add(text)
            add("error", f"« {text} » a les mêmes mots qu'un exemple du sujet {index.title(sorted(others)[0])} : "
                         "le modèle ne pourra pas les distinguer.")
        if normalise(text) in public_keys:
            add("error", f"« {text} » fait partie du jeu d'évaluation public : il ne doit pas servir "
                         "d'exemple (l'évaluation ne serait plus honnête).")
        if ENTITY_SYNTAX.search(text):
            add("error", f"« {text} » : des crochets suivis de parenthèses ou d'accolades ont un sens "
                         "particulier pour l'entraînement ; reformulez sans crochets.")
        if text.startswith("/"):
            add("error", f"« {text} » : un exemple ne peut pas commencer par « / ».")
        if len(text) > MAX_EXAMPLE_CHARS:
            add("warning", f"« {text[:40]}… » est très long ({len(text)} caractères) : "
                           "préférez des questions courtes, comme les écrivent les usagers.")
    new_texts = [t for t in (examples if new is None else new) if t in examples and t not in flagged]
    for text, (other, other_text, _) in index.near(new_texts, topic_id).items():
        add("warning", f"« {text} » ressemble beaucoup à « {other_text} », exemple du sujet "
                       f"{index.title(other)} : le modèle risque de les confondre.")
    return issues


# Catalog fields -----------------------------------------------------------------------------
def check_meta(topic: TopicData, existing: dict[str, TopicData], new_topic: bool) -> list[Issue]:
    issues: list[Issue] = []
    if new_topic:
        if not TOPIC_ID.fullmatch(topic.id):
            issues.append(Issue("error", "id", "L'identifiant du sujet s'écrit en minuscules sans accents, "
                                               "chiffres et « _ » (2 à 49 caractères), par exemple « carte_grise ».", topic.id))
        elif topic.id in existing:
            issues.append(Issue("error", "id", f"Le sujet « {topic.id} » existe déjà.", topic.id))
        if not DOMAIN_ID.fullmatch(topic.domain):
            issues.append(Issue("error", "domain", "Le domaine s'écrit en minuscules sans accents "
                                                   "(par exemple « etat_civil »).", topic.id))
    if not topic.title.strip():
        issues.append(Issue("error", "title", "Le titre du sujet est vide.", topic.id))
    elif len(topic.title) > MAX_TITLE_CHARS:
        issues.append(Issue("error", "title", f"Le titre dépasse {MAX_TITLE_CHARS} caractères.", topic.id))
    if len(topic.label) > MAX_LABEL_CHARS:
        issues.append(Issue("error", "label", f"Le libellé court (bouton) fait {len(topic.label)} caractères : "
                                              f"Messenger en affiche {MAX_LABEL_CHARS} au plus.", topic.id))
    return issues


def check_topic(
    topic: TopicData,
    all_topics: dict[str, TopicData],
    commune: Commune,
    public_keys: frozenset[str] = frozenset(),
    new_topic: bool = False,
    new_examples: Iterable[str] | None = None,
    dropped: Iterable[str] = (),
    index: ExampleIndex | None = None,
) -> list[Issue]:
    """Every check of one topic against the others (`all_topics` may include it)."""
    others = {k: v for k, v in all_topics.items() if k != topic.id}
    index = index or ExampleIndex(others)
    return [
        *check_meta(topic, others, new_topic),
        *check_answer(topic.answer, commune, topic.id),
        *check_examples(topic.id, list(topic.examples), index, public_keys, new_examples, dropped),
    ]
