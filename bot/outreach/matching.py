"""Which published text a citizen's question is about: TF-IDF similarity at runtime.

Rumours and the crisis message live in the database (staff edit them in the console), not
in the training data, so they are matched here rather than by the NLU model:

- texts are normalised (lower case, no accents, no punctuation), and the framing of a
  rumour question ("c'est vrai que", "il paraît que", "j'ai entendu dire"…) is removed;
- similarity is the cosine of character n-gram TF-IDF vectors (3 to 5 characters within
  words: robust to typos and missing accents), fitted on the candidates and the question;
- a match also needs enough of the statement's content words (their first 5 letters) in
  the question, generic ones aside ("municipale", "scolaire"…): a question that names only
  the subject ("horaires de la piscine") is not about the claim ("la piscine va fermer").
  A question framed as a rumour check ("c'est vrai que…") needs less (`framed()`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

FRAMING = (
    "est ce que c est vrai que", "est ce vrai que", "est il vrai que", "c est vrai que", "cest vrai que",
    "c est vrai", "cest vrai", "vrai ou faux", "info ou intox", "il parait que", "il parait qu",
    "j ai entendu dire que", "j ai entendu dire qu", "j ai entendu que", "j ai lu que", "on m a dit que",
    "on dit que", "on raconte que", "une rumeur dit que", "la rumeur dit que", "c est une rumeur",
    "fake news", "fausse info", "est ce que", "est ce qu",
)
STOP_WORDS = frozenset("""
a ai au aux avec bonjour c ca ce ces cet cette d dans de des du elle en est et etre eu il ils
j je l la le les leur lui m ma mais me meme mes moi mon n ne nos notre nous on ou par pas pour
qu que qui s sa se ses si son sur t ta te tes toi ton tu un une vos votre vous y va vont
allait allaient aller sera seront etait fait faire plus tres tout tous toute toutes
vrai faux rumeur rumeurs info infos intox mairie commune ville parait entendu dire dit
svp stp merci quand comment pourquoi quoi quel quelle quels quelles bien aussi alors
""".split())
# Words that name where or whose rather than what: not enough to make two sentences alike.
GENERIC_WORDS = frozenset("""
municipal municipale municipaux municipales communal communale communaux communales scolaire scolaires
public publique publics publiques ville village quartier habitants
""".split())


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


def strip_framing(text: str) -> str:
    """The normalised question without "c'est vrai que"-like framing."""
    text = f" {normalise(text)} "
    for phrase in FRAMING:
        text = text.replace(f" {phrase} ", " ")
    return " ".join(text.split())


def content_stems(text: str) -> set[str]:
    return {word[:5] for word in normalise(text).split()
            if len(word) >= 4 and word not in STOP_WORDS and word not in GENERIC_WORDS}


def framed(question: str) -> bool:
    """Whether the question asks if something is true ("c'est vrai que…", "rumeur"…)."""
    text = f" {normalise(question)} "
    return any(f" {phrase} " in text for phrase in FRAMING[:-2]) or " rumeur" in text


@dataclass(frozen=True)
class Match:
    index: int
    score: float
    coverage: float  # share of the candidate's content words found in the question


def best_match(question: str, candidates: Sequence[str], min_score: float,
               min_coverage: float = 0.5) -> Match | None:
    """The candidate most similar to `question` if its score reaches `min_score` and the
    question holds at least `min_coverage` of its content words (and one at least)."""
    query = strip_framing(question)
    if not query or not candidates:
        return None
    stems = content_stems(query)
    if not stems:
        return None
    documents = [strip_framing(c) or normalise(c) for c in candidates]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    matrix = vectorizer.fit_transform([*documents, query])
    scores = cosine_similarity(matrix[-1], matrix[:-1])[0]
    best: Match | None = None
    for index, score in enumerate(scores):
        wanted = content_stems(candidates[index])
        shared = stems & wanted
        coverage = len(shared) / len(wanted) if wanted else 0.0
        if score < min_score or not shared or coverage < min_coverage:
            continue
        if best is None or score > best.score:
            best = Match(index, float(score), coverage)
    return best


def mentions(question: str, keywords: Sequence[str]) -> bool:
    """Whether the question names one of the keywords (accents and case ignored; a
    keyword of several words must appear whole, one word may be inflected)."""
    text = f" {normalise(question)} "
    words = set(text.split())
    for keyword in keywords:
        key = normalise(keyword)
        if not key:
            continue
        if " " in key:
            if f" {key} " in text:
                return True
        elif any(word == key or (len(key) >= 4 and word.startswith(key[:max(4, len(key) - 2)])) for word in words):
            return True
    return False
