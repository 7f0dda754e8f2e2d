"""Editing the FAQ: the service the console's editor pages call.

Every change follows the same path, under one exclusive lock (an `flock` on the FAQ
folder, shared by every process on the machine):
1. re-read the files (another editor may have saved a second ago);
2. check the version the editor started from, per part of the topic (answer, examples,
   catalog fields): a part changed meanwhile by someone else is a conflict (refused with
   the current text and who changed it); a change to another part or another topic is
   simply kept (both edits survive);
3. validate (bot.faq.validation): errors in the parts being changed block the save;
4. write the files atomically (order and comments kept) and the audit log entry.

The action server re-reads a file as soon as it changes (bot.faq.store.FaqStore), so a
saved answer is live for citizens at their next message, without retraining.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.commune import Commune, load_commune
from bot.db import session_scope
from bot.faq import audit
from bot.faq.documents import (
    CONSOLE_ORIGIN,
    FIELDS,
    FaqFiles,
    FaqPaths,
    TopicData,
    TopicReader,
    parse_version,
)
from bot.faq.text import clean_answer, clean_line, normalise
from bot.faq.validation import Issue, check_topic, clean_examples, errors, public_set_keys
from bot.settings import PROJECT_ROOT, get_settings

PUBLIC_SET = PROJECT_ROOT / "eval" / "public" / "public.tsv"
PART_LABELS = {"answer": "la réponse", "examples": "les questions", "meta": "le titre ou le libellé"}
FIELD_PARTS = {"answer": "answer", "examples": "examples", "title": "meta", "label": "meta",
               "covers": "meta", "source": "meta", "id": "meta", "domain": "meta"}


class FaqError(Exception):
    """A change that cannot be made; `str()` is a French message for the editor."""


class TopicNotFound(FaqError):
    pass


class ValidationFailed(FaqError):
    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__(" ".join(i.message for i in errors(issues)))


class EditConflict(FaqError):
    """Someone saved the same part of the topic since the editor opened it."""

    def __init__(self, message: str, current: TopicData, parts: list[str]) -> None:
        self.current = current
        self.parts = parts
        super().__init__(message)


@dataclass(frozen=True)
class SaveResult:
    topic: TopicData | None
    warnings: list[Issue]
    written: list[Path]
    change_id: int | None = None


@dataclass(frozen=True)
class TopicSummary:
    topic: TopicData
    changed_at: dt.datetime | None
    changed_by: str | None


class FaqEditor:
    def __init__(
        self,
        paths: FaqPaths,
        database_url: str,
        commune: Callable[[], Commune] | None = None,
        public_set: Path | None = PUBLIC_SET,
        timezone: str = "Europe/Paris",
    ) -> None:
        self.paths = paths
        self.database_url = database_url
        self._commune = commune or load_commune
        self.public_set = public_set
        self.timezone = timezone
        self._reader = TopicReader(paths)

    @classmethod
    def from_settings(cls) -> FaqEditor:
        settings = get_settings()
        return cls(
            FaqPaths(settings.faq_dir.parent, settings.catalog_file, settings.faq_dir),
            settings.database_url, timezone=settings.timezone,
        )

    @property
    def commune(self) -> Commune:
        return self._commune()

    # Reading ------------------------------------------------------------------------------
    def files(self) -> FaqFiles:
        return FaqFiles(self.paths)

    def topics(self) -> dict[str, TopicData]:
        return self._reader.topics()

    def topic(self, topic_id: str) -> TopicData:
        topic = self.topics().get(topic_id)
        if topic is None:
            raise TopicNotFound(f"Le sujet « {topic_id} » n'existe pas (ou plus).")
        return topic

    def domains(self) -> list[str]:
        return list(dict.fromkeys(t.domain for t in self.topics().values()))

    def summaries(self, query: str = "", domain: str = "") -> list[TopicSummary]:
        """Topics in catalog order, filtered by domain and by words of the title, id,
        answer or questions (accents and case ignored), with their last change."""
        words = normalise(query).split()
        changes = audit.last_changes(self.database_url)
        found = []
        for topic in self.topics().values():
            if domain and topic.domain != domain:
                continue
            haystack = normalise(" ".join([topic.id, topic.title, topic.label, topic.answer, *topic.examples]))
            if all(word in haystack for word in words):
                change = changes.get(topic.id)
                found.append(TopicSummary(topic, change.at if change else None, change.actor if change else None))
        return found

    # Checking -----------------------------------------------------------------------------
    def check(self, topic: TopicData, new_topic: bool = False, before: TopicData | None = None) -> list[Issue]:
        """Every issue of `topic` as it would be saved (for a live check in the form)."""
        examples, dropped = clean_examples(topic.examples)
        topic = replace(topic, examples=tuple(examples), answer=clean_answer(topic.answer))
        new_examples = None if before is None else [e for e in examples if e not in before.examples]
        return check_topic(topic, self.topics(), self.commune, public_set_keys(self.public_set),
                           new_topic=new_topic, new_examples=new_examples, dropped=dropped)

    # Writing ------------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[FaqFiles]:
        """The FAQ files, freshly read, under the exclusive edit lock."""
        self.paths.faq_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.faq_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield FaqFiles(self.paths)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def save_topic(
        self,
        topic_id: str,
        actor: str,
        base_version: str | None = None,
        *,
        answer: str | None = None,
        examples: Iterable[str] | None = None,
        title: str | None = None,
        label: str | None = None,
        covers: str | None = None,
        source: str | None = None,
        add_examples: Iterable[str] = (),
        remove_examples: Iterable[str] = (),
    ) -> SaveResult:
        """Changes the given parts of a topic. `base_version` is the `version` the editor
        started from; it is required to replace the answer, the whole list of examples or
        the catalog fields. Adding or removing single examples needs none (they commute)."""
        with self.locked() as files:
            topics = files.topics()
            before = topics.get(topic_id)
            if before is None:
                raise TopicNotFound(f"Le sujet « {topic_id} » n'existe pas (ou plus) : il a peut-être été supprimé.")
            new_examples = list(before.examples) if examples is None else [clean_line(e) for e in examples]
            removed = {normalise(e) for e in remove_examples}
            new_examples = [e for e in new_examples if normalise(e) not in removed]
            present = {normalise(e) for e in new_examples}
            for text in map(clean_line, add_examples):
                if text and normalise(text) not in present:
                    new_examples.append(text)
                    present.add(normalise(text))
            kept, dropped = clean_examples(new_examples)
            after = replace(
                before,
                answer=before.answer if answer is None else clean_answer(answer),
                examples=tuple(kept),
                title=before.title if title is None else " ".join(title.split()),
                label=before.label if label is None else " ".join(label.split()),
                covers=before.covers if covers is None else " ".join(covers.split()),
                source=before.source if source is None else " ".join(source.split()),
            )
            changed = _changed_parts(before, after)
            replaced = {"answer": answer is not None, "examples": examples is not None,
                        "meta": any(v is not None for v in (title, label, covers, source))}
            self._check_version(before, base_version, [p for p in changed if replaced[p]])
            if not changed:
                notes = [Issue("warning", "examples", "Doublons retirés : " + ", ".join(f"« {d} »" for d in dropped[:5]),
                               topic_id)] if dropped else []
                return SaveResult(before, notes, [])
            issues = check_topic(
                after, topics, self.commune, public_set_keys(self.public_set),
                new_examples=[e for e in kept if e not in before.examples], dropped=dropped,
            )
            issues = _blocking_only_for(issues, changed)
            if errors(issues):
                raise ValidationFailed(issues)
            if "examples" in changed:
                files.set_examples(after, list(after.examples))
            if "answer" in changed:
                files.set_answer(after, after.answer)
            if "meta" in changed:
                files.set_catalog(after)
            action = "add_examples" if changed == ["examples"] and examples is None else "edit"
            summary = _summary(before, after, changed)
            return self._commit(files, actor, action, topic_id, summary,
                                _parts(before, changed), _parts(after, changed), after, issues)

    def save_form(
        self, topic_id: str, actor: str, base_version: str, *, answer: str, examples: Iterable[str],
        title: str, label: str,
    ) -> SaveResult:
        """Saves an edit form that sends every field: only the parts the editor changed
        from `base_version` are saved, so that a part someone else changed meanwhile is
        kept when this editor did not touch it (instead of a conflict)."""
        base = parse_version(base_version)
        current = self.topic(topic_id)
        examples = [clean_line(e) for e in examples if clean_line(e)]
        typed = replace(current, answer=clean_answer(answer), examples=tuple(examples),
                        title=" ".join(title.split()), label=" ".join(label.split())).field_versions()
        changed = {part for part in FIELDS if typed[part] != base.get(part)} if base else set(FIELDS)
        return self.save_topic(
            topic_id, actor, base_version,
            answer=answer if "answer" in changed else None,
            examples=examples if "examples" in changed else None,
            title=title if "meta" in changed else None,
            label=label if "meta" in changed else None,
        )

    def add_examples(self, topic_id: str, texts: Iterable[str], actor: str) -> SaveResult:
        return self.save_topic(topic_id, actor, add_examples=texts)

    def add_topic(
        self, actor: str, topic_id: str, domain: str, title: str, answer: str, examples: Iterable[str],
        label: str = "", covers: str = "", source: str = "",
    ) -> SaveResult:
        kept, dropped = clean_examples(examples)
        topic = TopicData(
            id=str(topic_id).strip(), domain=str(domain).strip(), title=" ".join(title.split()),
            label=" ".join(label.split()), covers=" ".join(covers.split()), source=" ".join(source.split()),
            origin=CONSOLE_ORIGIN, examples=tuple(kept), answer=clean_answer(answer),
        )
        with self.locked() as files:
            topics = files.topics()
            issues = check_topic(topic, topics, self.commune, public_set_keys(self.public_set),
                                 new_topic=True, dropped=dropped)
            if topic.id in topics:
                # check_meta compares with the other topics only: an existing id is an error here.
                issues.append(Issue("error", "id", f"Le sujet « {topic.id} » existe déjà.", topic.id))
            if errors(issues):
                raise ValidationFailed(issues)
            files.set_examples(topic, list(topic.examples))
            files.set_answer(topic, topic.answer)
            files.set_catalog(topic)
            summary = f"Nouveau sujet « {topic.title} » ({topic.domain}), {len(topic.examples)} exemples"
            return self._commit(files, actor, "add_topic", topic.id, summary, None, topic.as_dict(), topic, issues)

    def remove_topic(self, topic_id: str, actor: str, base_version: str) -> SaveResult:
        with self.locked() as files:
            topic = files.topics().get(topic_id)
            if topic is None:
                raise TopicNotFound(f"Le sujet « {topic_id} » n'existe pas (ou plus).")
            if not topic.removable:
                raise FaqError(f"« {topic.title or topic_id} » fait partie du catalogue de référence : "
                               "il ne peut pas être supprimé (modifiez plutôt sa réponse).")
            self._check_version(topic, base_version, ["answer", "examples", "meta"])
            files.remove(topic)
            return self._commit(files, actor, "remove_topic", topic_id,
                                f"Sujet « {topic.title} » supprimé", topic.as_dict(), None, None, [])

    def _commit(
        self, files: FaqFiles, actor: str, action: str, topic_id: str | None, summary: str,
        before: Any, after: Any, topic: TopicData | None, issues: list[Issue],
    ) -> SaveResult:
        # The audit entry is committed only if the files were written (and rolled back if not).
        with session_scope(self.database_url) as session:
            row = audit.record(session, actor, action, summary, topic_id, before, after)
            written = files.save()
            change_id = row.id
        saved = self.topics().get(topic.id) if topic else None
        return SaveResult(saved, [i for i in issues if not i.blocking], written, change_id)

    def _check_version(self, current: TopicData, base_version: str | None, parts: list[str]) -> None:
        if not parts:
            return
        base = parse_version(base_version or "")
        if not base:
            raise FaqError("Version de départ manquante : rechargez la page du sujet puis refaites la modification.")
        now = current.field_versions()
        stale = [p for p in parts if base.get(p) != now[p]]
        if not stale:
            return
        change = audit.last_change(self.database_url, current.id)
        who, when = "quelqu'un", ""
        if change:
            local = change.at.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(self.timezone))
            who, when = change.actor, f" (le {local:%d/%m à %H:%M})"
        what = " et ".join(PART_LABELS[p] for p in stale)
        raise EditConflict(
            f"Pendant que vous éditiez ce sujet, {who} a modifié {what}{when}. Votre modification "
            "n'a pas été enregistrée pour ne pas effacer la sienne : voici la version actuelle, "
            "reportez-y votre changement puis enregistrez.",
            current, stale,
        )


def _changed_parts(before: TopicData, after: TopicData) -> list[str]:
    old, new = before.field_versions(), after.field_versions()
    return [p for p in ("answer", "examples", "meta") if old[p] != new[p]]


def _parts(topic: TopicData, parts: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "answer" in parts:
        values["answer"] = topic.answer
    if "examples" in parts:
        values["examples"] = list(topic.examples)
    if "meta" in parts:
        values.update(title=topic.title, label=topic.label, covers=topic.covers, source=topic.source)
    return values


def _summary(before: TopicData, after: TopicData, parts: list[str]) -> str:
    bits = []
    if "answer" in parts:
        bits.append("réponse modifiée")
    if "examples" in parts:
        added = [e for e in after.examples if e not in before.examples]
        removed = [e for e in before.examples if e not in after.examples]
        if added:
            bits.append(f"{len(added)} question(s) ajoutée(s)")
        if removed:
            bits.append(f"{len(removed)} question(s) retirée(s)")
    if "meta" in parts:
        bits.append("titre ou libellé modifié")
    return f"« {after.title or after.id} » : " + ", ".join(bits)


def _blocking_only_for(issues: list[Issue], parts: list[str]) -> list[Issue]:
    """Errors about parts not being changed are shown as warnings: they do not block."""
    return [
        issue if FIELD_PARTS.get(issue.field) in parts else replace(issue, level="warning")
        for issue in issues
    ]


@lru_cache(maxsize=1)
def _default_editor(key: tuple[Any, ...]) -> FaqEditor:
    return FaqEditor.from_settings()


def get_editor() -> FaqEditor:
    """The editor on the configured FAQ files and database (rebuilt if the settings change)."""
    settings = get_settings()
    return _default_editor((settings.faq_dir, settings.catalog_file, settings.database_url, settings.timezone))
