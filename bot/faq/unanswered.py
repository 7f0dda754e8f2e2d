"""Unanswered questions: what citizens asked that the assistant could not answer.

Collected from the tracker store (bot.faq.conversations): a citizen's question that hit
the fallback (suggestions offered, or a person after two misses), or that ended with the
conversation handed to a person without an FAQ answer; when the citizen simply asked for
a person ("je veux parler à quelqu'un"), the question asked just before is the one kept.

Similar questions are grouped (TF-IDF on character n-grams, agglomerative clustering with
cosine distance), most frequent first. An editor adds one or more to an existing topic as
examples, starts a new topic with them, or dismisses them; the decision is stored
(`guichet_unanswered_reviews`) and covers the occurrences seen so far: if citizens ask
the same again later, it shows again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from bot.db import session_scope, utcnow
from bot.db.faq_models import UnansweredReview
from bot.faq import audit
from bot.faq.conversations import TrackerReader, Turn
from bot.faq.editing import FaqEditor, SaveResult
from bot.faq.text import clean_line, normalise

LOOK_BACK_TURNS = 3
DEFAULT_DAYS = 90
MAX_QUESTIONS = 2000  # distinct texts clustered at once (memory grows with the square)
DISTANCE_THRESHOLD = 0.75  # cosine distance between members (average linkage), tuned by hand


@dataclass(frozen=True)
class Question:
    event_id: int
    conversation_id: str
    text: str
    key: str  # normalised text
    channel: str
    timestamp: float
    kind: str  # fallback · handoff
    candidates: tuple[tuple[str, float], ...]


@dataclass
class Variant:
    text: str
    key: str
    count: int
    last_event_id: int


@dataclass
class Group:
    id: str  # stable for the same set of texts
    label: str  # the most frequent wording
    count: int
    variants: list[Variant]
    kinds: dict[str, int]
    channels: dict[str, int]
    first_seen: dt.datetime
    last_seen: dt.datetime
    # The FAQ topic the model found most likely for these questions, if any.
    suggested_topic: str | None = None
    conversations: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [v.key for v in self.variants]

    @property
    def texts(self) -> list[str]:
        return [v.text for v in self.variants]


def unanswered_in(turns: list[Turn]) -> list[Question]:
    """The unanswered citizen questions among `turns` (oldest first)."""
    found: dict[int, Question] = {}
    by_conversation: dict[str, list[Turn]] = {}
    for turn in turns:
        history = by_conversation.setdefault(turn.conversation_id, [])
        if turn.paused or turn.in_form:
            history.append(turn)
            continue
        if turn.question and turn.fallback:
            found[turn.event_id] = _question(turn, "fallback")
        elif turn.handoff and not turn.answered_topic:
            if turn.question:
                found[turn.event_id] = _question(turn, "handoff")
            else:
                # "Un agent svp": the question is the citizen's previous message, if recent
                # and not answered by the FAQ.
                for earlier in reversed(history[-LOOK_BACK_TURNS:]):
                    if earlier.question:
                        if not earlier.answered_topic and earlier.event_id not in found:
                            found[earlier.event_id] = _question(earlier, "handoff")
                        break
        history.append(turn)
    return sorted(found.values(), key=lambda q: q.event_id)


def _question(turn: Turn, kind: str) -> Question:
    text = clean_line(turn.text)
    return Question(turn.event_id, turn.conversation_id, text, normalise(text)[:255], turn.channel,
                    turn.timestamp, kind, tuple(turn.candidates))


def group_questions(questions: list[Question], threshold: float = DISTANCE_THRESHOLD) -> list[Group]:
    """Similar questions together, the largest groups first."""
    by_key: dict[str, list[Question]] = {}
    for question in questions:
        if question.key:
            by_key.setdefault(question.key, []).append(question)
    keys = sorted(by_key, key=lambda k: max(q.event_id for q in by_key[k]), reverse=True)[:MAX_QUESTIONS]
    labels = _cluster(keys, threshold)
    clusters: dict[int, list[str]] = {}
    for key, label in zip(keys, labels, strict=True):
        clusters.setdefault(label, []).append(key)
    groups = [_group([q for key in members for q in by_key[key]]) for members in clusters.values()]
    return sorted(groups, key=lambda g: (-g.count, -g.last_seen.timestamp()))


def _cluster(keys: list[str], threshold: float) -> list[int]:
    if len(keys) < 2:
        return [0] * len(keys)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(keys)
    options = {"n_clusters": None, "distance_threshold": threshold, "linkage": "average"}
    try:
        model = AgglomerativeClustering(metric="cosine", **options)
    except TypeError:  # scikit-learn < 1.2 names it `affinity`
        model = AgglomerativeClustering(affinity="cosine", **options)
    return [int(label) for label in model.fit_predict(matrix.toarray())]


def _group(questions: list[Question]) -> Group:
    variants: dict[str, Variant] = {}
    texts: dict[str, Counter[str]] = {}
    for question in questions:
        variant = variants.setdefault(question.key, Variant(question.text, question.key, 0, 0))
        variant.count += 1
        variant.last_event_id = max(variant.last_event_id, question.event_id)
        texts.setdefault(question.key, Counter())[question.text] += 1
    for key, variant in variants.items():
        variant.text = texts[key].most_common(1)[0][0]  # the most frequent spelling
    ordered = sorted(variants.values(), key=lambda v: (-v.count, len(v.text)))
    times = [q.timestamp for q in questions]
    tops = Counter(q.candidates[0][0] for q in questions if q.candidates)
    return Group(
        id=hashlib.sha1("\n".join(sorted(variants)).encode()).hexdigest()[:12],
        label=ordered[0].text,
        count=len(questions),
        variants=ordered,
        kinds=dict(Counter(q.kind for q in questions)),
        channels=dict(Counter(q.channel or "inconnu" for q in questions)),
        first_seen=dt.datetime.fromtimestamp(min(times), dt.timezone.utc),
        last_seen=dt.datetime.fromtimestamp(max(times), dt.timezone.utc),
        suggested_topic=tops.most_common(1)[0][0] if tops else None,
        conversations=sorted({q.conversation_id for q in questions}),
    )


class UnansweredQuestions:
    """The editor's view of unanswered questions, and the decisions taken on them."""

    def __init__(self, database_url: str, editor: FaqEditor | None = None) -> None:
        self.database_url = database_url
        self.editor = editor
        self.reader = TrackerReader(database_url)

    def questions(self, days: int = DEFAULT_DAYS, now: dt.datetime | None = None,
                  include_reviewed: bool = False) -> list[Question]:
        since = (now or utcnow()) - dt.timedelta(days=days)
        found = unanswered_in(self.reader.turns(since=since))
        if include_reviewed:
            return found
        reviewed = self._reviewed({q.key for q in found})
        return [q for q in found if q.event_id > reviewed.get(q.key, 0)]

    def groups(self, days: int = DEFAULT_DAYS, now: dt.datetime | None = None,
               threshold: float = DISTANCE_THRESHOLD) -> list[Group]:
        return group_questions(self.questions(days, now), threshold)

    def _reviewed(self, keys: set[str]) -> dict[str, int]:
        """For each key, the last event id an editor's decision covers."""
        if not keys:
            return {}
        statement = (
            select(UnansweredReview.text_key, func.max(UnansweredReview.up_to_event_id))
            .where(UnansweredReview.text_key.in_(sorted(keys))).group_by(UnansweredReview.text_key)
        )
        with session_scope(self.database_url) as session:
            return {key: int(up_to) for key, up_to in session.execute(statement)}

    def mark(self, texts: Iterable[str], status: str, actor: str, topic_id: str | None = None) -> int:
        """Records a decision on these questions (by text); returns how many were recorded."""
        up_to = self.reader.last_event_id()
        rows = {normalise(t)[:255]: clean_line(t) for t in texts if normalise(t)}
        with session_scope(self.database_url) as session:
            for key, text in rows.items():
                session.add(UnansweredReview(text_key=key, text=text, up_to_event_id=up_to, status=status,
                                             topic_id=topic_id, actor=actor))
            if status == "dismissed" and rows:
                sample = ", ".join(f"« {t} »" for t in list(rows.values())[:3])
                audit.record(session, actor, "dismiss", f"{len(rows)} question(s) sans réponse écartée(s) : {sample}"
                             + ("…" if len(rows) > 3 else ""), after=list(rows.values()))
        return len(rows)

    def dismiss(self, texts: Iterable[str], actor: str) -> int:
        return self.mark(texts, "dismissed", actor)

    def add_to_topic(self, texts: Iterable[str], topic_id: str, actor: str) -> SaveResult:
        """Adds the questions as examples of `topic_id` (validated), then marks them done.
        Raises bot.faq.editing.ValidationFailed (nothing changed) if one is refused."""
        if self.editor is None:
            raise RuntimeError("UnansweredQuestions needs a FaqEditor to add examples")
        texts = [clean_line(t) for t in texts if clean_line(t)]
        result = self.editor.add_examples(topic_id, texts, actor)
        self.mark(texts, "example", actor, topic_id)
        return result

    def new_topic_draft(self, texts: Iterable[str]) -> dict[str, object]:
        """The start of a new topic's form: these questions as its first examples."""
        examples = list(dict.fromkeys(clean_line(t) for t in texts if clean_line(t)))
        return {"examples": examples, "title": examples[0][:120] if examples else "", "answer": ""}

    def topic_created(self, texts: Iterable[str], topic_id: str, actor: str) -> int:
        """To call once the new topic made from these questions is saved."""
        return self.mark(texts, "new_topic", actor, topic_id)
