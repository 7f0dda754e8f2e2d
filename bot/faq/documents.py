"""The FAQ as editable documents: the catalog and the domain files of `data/faq/`.

`FaqFiles` reads everything into `TopicData` snapshots and writes changes back through
the YAML round trip (order and comments kept). It does no validation and no locking:
`bot.faq.editing.FaqEditor` does both around it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from bot.faq.store import RETRIEVAL_INTENT, parse_examples
from bot.faq.yaml_rt import YamlDocument, literal

# Catalog keys (French, as the catalog is written by staff).
TITLE, LABEL, COVERS, SOURCE, ORIGIN = "titre", "bouton", "couvre", "source", "origine"
# Topics added from the console carry `origine: console`; the others are the reference
# catalog's, which the project must not drop (see the catalog's header).
CONSOLE_ORIGIN = "console"
FIELDS = ("answer", "examples", "meta")


@dataclass(frozen=True)
class TopicData:
    id: str
    domain: str
    title: str = ""
    label: str = ""  # empty: derived from the title (bot.faq.store._short_label)
    covers: str = ""
    source: str = ""
    origin: str = ""
    examples: tuple[str, ...] = ()
    answer: str = ""
    in_catalog: bool = True
    in_files: bool = True

    def field_versions(self) -> dict[str, str]:
        """A short hash per editable part: answer, examples, catalog fields."""
        parts = {
            "answer": self.answer,
            "examples": list(self.examples),
            "meta": [self.domain, self.title, self.label, self.covers, self.source],
        }
        return {name: _digest(value) for name, value in parts.items()}

    @property
    def version(self) -> str:
        """The topic's version token, `answer.examples.meta` hashes: an edit carries the
        token it started from, so that a concurrent change is detected per part."""
        versions = self.field_versions()
        return ".".join(versions[name] for name in FIELDS)

    @property
    def removable(self) -> bool:
        return self.origin == CONSOLE_ORIGIN

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "domain": self.domain, "title": self.title, "label": self.label,
            "covers": self.covers, "source": self.source, "examples": list(self.examples),
            "answer": self.answer, "version": self.version,
        }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()[:10]


def parse_version(token: str) -> dict[str, str]:
    parts = str(token or "").split(".")
    return dict(zip(FIELDS, parts, strict=True)) if len(parts) == len(FIELDS) else {}


@dataclass
class FaqPaths:
    """Where the FAQ lives: `data_dir/faq/<domain>.yml` and the catalog."""

    data_dir: Path
    catalog_file: Path
    faq_dir: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.catalog_file = Path(self.catalog_file)
        self.faq_dir = Path(self.faq_dir) if self.faq_dir else self.data_dir / "faq"

    def domain_file(self, domain: str) -> Path:
        return self.faq_dir / f"{domain}.yml"


def _topics_from(catalog: Any, files: dict[str, Any]) -> dict[str, TopicData]:
    """Every topic, in catalog order, then topics found only in the files."""
    topics: dict[str, TopicData] = {}
    for domain, entries in (catalog or {}).items():
        for entry in entries or []:
            topics[str(entry["id"])] = TopicData(
                id=str(entry["id"]), domain=str(domain), title=str(entry.get(TITLE) or ""),
                label=str(entry.get(LABEL) or ""), covers=str(entry.get(COVERS) or ""),
                source=str(entry.get(SOURCE) or ""), origin=str(entry.get(ORIGIN) or ""),
                in_files=False,
            )
    for domain, data in files.items():
        for topic_id, (examples, answer) in _file_topics(data).items():
            base = topics.get(topic_id) or TopicData(id=topic_id, domain=domain, in_catalog=False)
            topics[topic_id] = replace(base, examples=tuple(examples), answer=answer, in_files=True)
    return topics


class TopicReader:
    """Fast read-only view (PyYAML's C loader), re-read only when a file changes."""

    def __init__(self, paths: FaqPaths) -> None:
        self.paths = paths
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] = ()
        self._topics: dict[str, TopicData] = {}

    def _current_stamp(self) -> tuple[Any, ...]:
        files = [self.paths.catalog_file, *sorted(self.paths.faq_dir.glob("*.yml"))]
        return tuple((str(p), s.st_ino, s.st_mtime_ns, s.st_size) for p in files if p.exists() for s in (p.stat(),))

    def topics(self) -> dict[str, TopicData]:
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                catalog = _fast_load(self.paths.catalog_file)
                files = {p.stem: _fast_load(p) for p in sorted(self.paths.faq_dir.glob("*.yml"))}
                self._topics = _topics_from(catalog, files)
                self._stamp = stamp
            return dict(self._topics)


def _fast_load(path: Path) -> Any:
    if not path.exists():
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


class FaqFiles:
    """One consistent read of the catalog and the FAQ files, editable in memory."""

    def __init__(self, paths: FaqPaths) -> None:
        self.paths = paths
        self.catalog = YamlDocument(paths.catalog_file)
        if self.catalog.data is None:
            self.catalog.data = CommentedMap()
        self.files: dict[str, YamlDocument] = {
            p.stem: YamlDocument(p) for p in sorted(paths.faq_dir.glob("*.yml"))
        }
        self._changed: set[str] = set()

    # Reading ----------------------------------------------------------------------------
    def topics(self) -> dict[str, TopicData]:
        return _topics_from(self.catalog.data, {d: doc.data for d, doc in self.files.items()})

    def topic(self, topic_id: str) -> TopicData | None:
        return self.topics().get(topic_id)

    def domains(self) -> list[str]:
        return list(dict.fromkeys([*map(str, (self.catalog.data or {}).keys()), *self.files]))

    # Writing (in memory until save) ----------------------------------------------------------
    def _doc(self, domain: str) -> YamlDocument:
        doc = self.files.get(domain)
        if doc is None:
            doc = YamlDocument(self.paths.domain_file(domain), text="")
            doc.data = CommentedMap([("version", DoubleQuotedScalarString("3.1")), ("nlu", CommentedSeq()),
                                     ("responses", CommentedMap())])
            self.files[domain] = doc
        return doc

    def set_examples(self, topic: TopicData, examples: list[str]) -> None:
        doc = self._doc(topic.domain)
        block = literal("".join(f"- {e}\n" for e in examples))
        nlu = doc.data.setdefault("nlu", CommentedSeq())
        name = f"{RETRIEVAL_INTENT}/{topic.id}"
        for item in nlu:
            if isinstance(item, dict) and item.get("intent") == name:
                item["examples"] = block
                break
        else:
            nlu.append(CommentedMap([("intent", name), ("examples", block)]))
        self._changed.add(topic.domain)

    def set_answer(self, topic: TopicData, answer: str) -> None:
        doc = self._doc(topic.domain)
        if doc.data.get("responses") is None:
            doc.data["responses"] = CommentedMap()
        responses = doc.data["responses"]
        key = f"utter_{RETRIEVAL_INTENT}/{topic.id}"
        variants = responses.get(key)
        if variants and isinstance(variants[0], dict):
            variants[0]["text"] = literal(answer)
        else:
            responses[key] = CommentedSeq([CommentedMap([("text", literal(answer))])])
        self._changed.add(topic.domain)

    def set_catalog(self, topic: TopicData) -> None:
        """Writes the topic's catalog entry (added at the end of its domain if new)."""
        data = self.catalog.data
        if data.get(topic.domain) is None:
            data[topic.domain] = CommentedSeq()
        entries = data[topic.domain]
        entry = next((e for e in entries if str(e.get("id")) == topic.id), None)
        if entry is None:
            entry = CommentedMap([("id", topic.id)])
            entries.append(entry)
        for key, value in ((TITLE, topic.title), (COVERS, topic.covers), (SOURCE, topic.source),
                           (LABEL, topic.label), (ORIGIN, topic.origin)):
            if value:
                entry[key] = value
            elif key in entry:
                del entry[key]
        self._changed.add("__catalog__")

    def remove(self, topic: TopicData) -> None:
        doc = self.files.get(topic.domain)
        if doc is not None and doc.data:
            name = f"{RETRIEVAL_INTENT}/{topic.id}"
            nlu = doc.data.get("nlu") or []
            for index in reversed(range(len(nlu))):
                if isinstance(nlu[index], dict) and nlu[index].get("intent") == name:
                    del nlu[index]
            responses = doc.data.get("responses") or {}
            responses.pop(f"utter_{RETRIEVAL_INTENT}/{topic.id}", None)
            self._changed.add(topic.domain)
        entries = (self.catalog.data or {}).get(topic.domain) or []
        for index in reversed(range(len(entries))):
            if str(entries[index].get("id")) == topic.id:
                del entries[index]
                self._changed.add("__catalog__")

    def save(self) -> list[Path]:
        """Writes the changed files (FAQ files first, then the catalog); returns them."""
        written = []
        for domain in sorted(self._changed - {"__catalog__"}):
            if self.files[domain].save():
                written.append(self.files[domain].path)
        if "__catalog__" in self._changed and self.catalog.save():
            written.append(self.catalog.path)
        self._changed.clear()
        return written


def _file_topics(data: Any) -> dict[str, tuple[list[str], str]]:
    data = data or {}
    examples = {
        str(item["intent"]).split("/", 1)[1]: parse_examples(str(item.get("examples") or ""))
        for item in data.get("nlu") or []
        if isinstance(item, dict) and str(item.get("intent", "")).startswith(RETRIEVAL_INTENT + "/")
    }
    answers = {}
    for name, variants in (data.get("responses") or {}).items():
        if str(name).startswith(f"utter_{RETRIEVAL_INTENT}/"):
            text = variants[0].get("text", "") if variants and isinstance(variants[0], dict) else ""
            answers[str(name).split("/", 1)[1]] = str(text or "")
    return {t: (examples.get(t, []), answers.get(t, "")) for t in [*examples, *answers]}
