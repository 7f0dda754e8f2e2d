"""The FAQ as staff wrote it: the catalog's topics and the files in `data/faq/`.

`data/faq/<domain>.yml` is Rasa training data (retrieval intents `faq/<id>` and their
`utter_faq/<id>` responses) and the single source of truth for questions and answers.
The action server reads answers from here, not from the trained model, so an edited
answer is live as soon as the file is saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from bot.settings import get_settings
from bot.yaml_file import ReloadingFile

RETRIEVAL_INTENT = "faq"
_EXAMPLE = re.compile(r"^\s*-\s?(.*)$")


@dataclass(frozen=True)
class Topic:
    id: str
    domain: str
    title: str
    covers: str
    source: str
    # Short label for buttons and quick replies (Messenger allows 20 characters).
    label: str


@dataclass(frozen=True)
class FaqEntry:
    topic_id: str
    examples: tuple[str, ...]
    answer: str
    file: Path


@dataclass(frozen=True)
class Catalog:
    topics: dict[str, Topic]

    @classmethod
    def from_dict(cls, data: Any) -> Catalog:
        topics: dict[str, Topic] = {}
        for domain, entries in (data or {}).items():
            for entry in entries:
                topics[entry["id"]] = Topic(
                    id=entry["id"],
                    domain=domain,
                    title=entry["titre"],
                    covers=entry.get("couvre", ""),
                    source=entry.get("source", ""),
                    label=entry.get("bouton") or _short_label(entry["titre"]),
                )
        return cls(topics)

    def domains(self) -> list[str]:
        return list(dict.fromkeys(t.domain for t in self.topics.values()))


def _short_label(title: str, limit: int = 20) -> str:
    """A button label from a title: cut before any parenthesis, then at a word boundary."""
    text = title.split("(")[0].strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:'") + "…"


def parse_examples(block: str) -> list[str]:
    """The example lines of a Rasa `examples: |` block."""
    examples = []
    for line in block.splitlines():
        match = _EXAMPLE.match(line)
        if match and match.group(1).strip():
            examples.append(match.group(1).strip())
    return examples


def load_faq_dir(faq_dir: Path) -> dict[str, FaqEntry]:
    """Every `faq/<id>` topic found in the domain files of `faq_dir`."""
    entries: dict[str, FaqEntry] = {}
    for path in sorted(faq_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        examples = {
            item["intent"].split("/", 1)[1]: parse_examples(item.get("examples", ""))
            for item in data.get("nlu") or []
            if item.get("intent", "").startswith(RETRIEVAL_INTENT + "/")
        }
        answers = {
            name.split("/", 1)[1]: (variants[0].get("text", "") if variants else "")
            for name, variants in (data.get("responses") or {}).items()
            if name.startswith(f"utter_{RETRIEVAL_INTENT}/")
        }
        for topic_id in examples.keys() | answers.keys():
            if topic_id in entries:
                raise ValueError(f"topic {topic_id} is defined in two files")
            entries[topic_id] = FaqEntry(
                topic_id=topic_id,
                examples=tuple(examples.get(topic_id, [])),
                answer=answers.get(topic_id, ""),
                file=path,
            )
    return entries


class FaqStore:
    """Catalog plus FAQ files, each re-read when it changes on disk."""

    def __init__(self, faq_dir: Path, catalog_file: Path) -> None:
        self.faq_dir = faq_dir
        self._catalog = ReloadingFile(catalog_file, Catalog.from_dict)
        self._entries: dict[str, FaqEntry] = {}
        self._stamp: tuple[tuple[str, int, int, int], ...] = ()

    @property
    def catalog(self) -> Catalog:
        return self._catalog.get()

    def entries(self) -> dict[str, FaqEntry]:
        # The inode too: editors replace files atomically (bot.faq.yaml_rt), so a new
        # version is a new inode even if it has the same size within the same clock tick.
        stamp = tuple(
            (p.name, s.st_ino, s.st_mtime_ns, s.st_size)
            for p in sorted(self.faq_dir.glob("*.yml"))
            for s in (p.stat(),)
        )
        if stamp != self._stamp:
            self._entries = load_faq_dir(self.faq_dir)
            self._stamp = stamp
        return self._entries

    def topic(self, topic_id: str) -> Topic | None:
        return self.catalog.topics.get(topic_id)

    def answer(self, topic_id: str) -> str | None:
        entry = self.entries().get(topic_id)
        return entry.answer if entry and entry.answer.strip() else None


@cache
def _store(faq_dir: Path, catalog_file: Path) -> FaqStore:
    return FaqStore(faq_dir, catalog_file)


def get_store() -> FaqStore:
    settings = get_settings()
    return _store(settings.faq_dir, settings.catalog_file)
