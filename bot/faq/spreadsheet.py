"""The FAQ as a spreadsheet (CSV or XLSX) and back, with a dry run before any change.

One row per piece of text, so that a spreadsheet holds the whole FAQ without loss:

    domaine | sujet | type     | texte
    mairie  | horaires_mairie | titre    | Horaires d'ouverture de la mairie
    mairie  | horaires_mairie | réponse  | La mairie de {commune} est ouverte : …
    mairie  | horaires_mairie | question | horaires mairie
    …

`type` is one of titre, bouton, couvre, source, réponse, question. CSV files are written
in UTF-8 with a BOM and `;` separators (what a French spreadsheet expects) and read in
UTF-8 or Windows-1252, with `;`, `,` or tabs.

Importing is two steps: `plan_import()` reads the file and reports what it would change
(examples added or removed, answers changed, new topics) and every problem: rows that
cannot be read, and changes that would break a rule (bot.faq.validation). `apply_import()`
applies a plan without problems, unless the FAQ changed since the plan was made. A file
with a bad row changes nothing. Topics missing from the file are left as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from bot.db import session_scope
from bot.faq import audit
from bot.faq.documents import CONSOLE_ORIGIN, TopicData
from bot.faq.editing import EditConflict, FaqEditor, FaqError
from bot.faq.text import clean_answer, clean_line, normalise
from bot.faq.validation import (
    DOMAIN_ID,
    TOPIC_ID,
    ExampleIndex,
    Issue,
    check_topic,
    clean_examples,
    errors,
    public_set_keys,
)

COLUMNS = ("domaine", "sujet", "type", "texte")
KINDS = ("titre", "bouton", "couvre", "source", "réponse", "question")
SINGLE_KINDS = ("titre", "bouton", "couvre", "source", "réponse")
HEADER_ALIASES = {
    "domaine": "domaine", "domain": "domaine",
    "sujet": "sujet", "topic": "sujet", "id": "sujet", "identifiant": "sujet",
    "type": "type", "kind": "type",
    "texte": "texte", "text": "texte", "contenu": "texte",
}
KIND_ALIASES = {normalise(k): k for k in KINDS} | {"reponse": "réponse", "questions": "question",
                                                   "exemple": "question", "libelle": "bouton"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_BYTES = 5_000_000
MAX_ROWS = 50_000
SHEET = "FAQ"


# Export ----------------------------------------------------------------------------------
def rows_of(topics: Iterable[TopicData]) -> list[tuple[str, str, str, str]]:
    rows = []
    for topic in topics:
        for kind, value in (("titre", topic.title), ("bouton", topic.label), ("couvre", topic.covers),
                            ("source", topic.source), ("réponse", topic.answer)):
            if value or kind in ("titre", "réponse"):
                rows.append((topic.domain, topic.id, kind, value))
        rows += [(topic.domain, topic.id, "question", example) for example in topic.examples]
    return rows


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ would run as a formula in a spreadsheet: quote it.
    return "'" + text if text.startswith(FORMULA_START) else text


def export_csv(topics: Iterable[TopicData]) -> bytes:
    stream = io.StringIO()
    writer = csv.writer(stream, delimiter=";", quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows_of(topics):
        writer.writerow([_csv_safe(cell) for cell in row])
    return stream.getvalue().encode("utf-8-sig")


def export_xlsx(topics: Iterable[TopicData]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.worksheet.datavalidation import DataValidation

    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    sheet.append(list(COLUMNS))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for number, row in enumerate(rows_of(topics), start=2):
        for column, value in enumerate(row, start=1):
            cell = sheet.cell(number, column)
            cell.value = value
            cell.data_type = "s"  # never a formula, whatever the text starts with
            if column == 4:
                cell.alignment = wrap
    for column, width in zip("ABCD", (18, 26, 11, 100), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:D{sheet.max_row}"
    kinds = DataValidation(type="list", formula1='"' + ",".join(KINDS) + '"', allow_blank=False)
    sheet.add_data_validation(kinds)
    kinds.add(f"C2:C{max(sheet.max_row, 2) + 1000}")
    guide = book.create_sheet("Mode d'emploi")
    for line in GUIDE:
        guide.append([line])
    guide.column_dimensions["A"].width = 120
    stream = io.BytesIO()
    book.save(stream)
    return stream.getvalue()


GUIDE = (
    "Une ligne par texte : le domaine, l'identifiant du sujet, le type de texte, le texte.",
    "Types : titre, bouton (libellé court, 20 caractères), couvre, source, réponse (une seule par sujet), "
    "question (une ligne par exemple de question, 15 au moins).",
    "Dans une réponse, les informations de la commune s'écrivent entre accolades : {telephone}, {horaires}…",
    "Ajouter une ligne « question » ajoute un exemple ; supprimer la ligne le retire. Un sujet sans ligne « question »"
    " garde ses questions, sans ligne « réponse » sa réponse.",
    "Un nouveau sujet : un identifiant nouveau (minuscules, sans accents, « _ »), avec titre, réponse et questions.",
    "Les sujets absents du fichier ne sont pas modifiés. L'import montre d'abord ce qu'il va changer.",
)


# Reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    row: int  # as the spreadsheet numbers it (the header is row 1)
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "message": self.message}


@dataclass
class ParsedTopic:
    id: str
    domain: str
    first_row: int
    single: dict[str, str] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def read_csv(data: bytes) -> list[list[str]]:
    text = _decode(data)
    first = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=first.count)
    return [[cell for cell in row] for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]


def read_xlsx(data: bytes) -> list[list[str]]:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sheet = book[SHEET] if SHEET in book.sheetnames else book.worksheets[0]
    rows = []
    for values in sheet.iter_rows(values_only=True):
        rows.append(["" if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
                     for v in values])
    book.close()
    return rows


def read_rows(data: bytes, filename: str) -> list[list[str]]:
    if len(data) > MAX_BYTES:
        raise FaqError(f"Le fichier dépasse {MAX_BYTES // 1_000_000} Mo.")
    if filename.lower().endswith(".xlsx") or data[:2] == b"PK":
        try:
            return read_xlsx(data)
        except Exception as exc:  # noqa: BLE001 - any unreadable workbook gets the same answer
            raise FaqError("Ce fichier n'a pas pu être lu comme un classeur Excel (.xlsx).") from exc
    return read_csv(data)


def _unquote(text: str) -> str:
    if text.startswith("'") and text[1:2] and text[1] in FORMULA_START:
        return text[1:]
    return text


def parse_rows(rows: list[list[str]], existing: dict[str, TopicData]) -> tuple[dict[str, ParsedTopic], list[RowError]]:
    problems: list[RowError] = []
    if not rows:
        return {}, [RowError(1, "Le fichier est vide.")]
    if len(rows) > MAX_ROWS:
        return {}, [RowError(1, f"Le fichier a plus de {MAX_ROWS} lignes.")]
    header = [HEADER_ALIASES.get(normalise(cell), "") for cell in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return {}, [RowError(1, "Colonnes manquantes : " + ", ".join(missing)
                             + " (la première ligne doit être : " + " ; ".join(COLUMNS) + ").")]
    position = {name: header.index(name) for name in COLUMNS}
    topics: dict[str, ParsedTopic] = {}
    for number, raw in enumerate(rows[1:], start=2):
        cells = {name: (raw[i] if i < len(raw) else "") for name, i in position.items()}
        if not any(str(v).strip() for v in cells.values()):
            continue  # blank line
        topic_id = cells["sujet"].strip()
        domain = cells["domaine"].strip()
        kind = KIND_ALIASES.get(normalise(cells["type"]))
        text = _unquote(cells["texte"])

        def bad(message: str, row: int = number) -> None:
            problems.append(RowError(row, message))

        if not topic_id:
            bad("La colonne « sujet » est vide.")
            continue
        if topic_id not in existing and not TOPIC_ID.fullmatch(topic_id):
            bad(f"« {topic_id} » n'est pas un identifiant de sujet valide (minuscules sans accents, chiffres, « _ »).")
            continue
        if kind is None:
            bad(f"Type « {cells['type']} » inconnu : {', '.join(KINDS)}.")
            continue
        known = existing.get(topic_id)
        if known and domain and domain != known.domain:
            bad(f"Le sujet « {topic_id} » est dans le domaine « {known.domain} », pas « {domain} » "
                "(changer un sujet de domaine n'est pas possible par import).")
            continue
        if not known and not domain:
            bad(f"Nouveau sujet « {topic_id} » : indiquez son domaine.")
            continue
        if not known and not DOMAIN_ID.fullmatch(domain):
            bad(f"« {domain} » n'est pas un nom de domaine valide (minuscules sans accents, « _ »).")
            continue
        parsed = topics.setdefault(topic_id, ParsedTopic(topic_id, known.domain if known else domain, number))
        if domain and domain != parsed.domain:
            bad(f"Le sujet « {topic_id} » a des lignes dans deux domaines différents.")
            continue
        if kind == "question":
            line = clean_line(text)
            if not line:
                bad("Question vide.")
            elif "\n" in text.strip():
                bad("Une question tient sur une seule ligne.")
            else:
                parsed.examples.append(line)
            continue
        if kind in parsed.single:
            bad(f"Deuxième ligne « {kind} » pour le sujet « {topic_id} » : une seule est possible.")
            continue
        value = clean_answer(text) if kind == "réponse" else " ".join(text.split())
        if kind in ("titre", "réponse") and not value:
            bad(f"{kind.capitalize()} vide pour le sujet « {topic_id} ».")
            continue
        parsed.single[kind] = value
    for parsed in topics.values():
        if parsed.id not in existing:
            for kind in ("titre", "réponse"):
                if kind not in parsed.single:
                    problems.append(RowError(parsed.first_row, f"Nouveau sujet « {parsed.id} » : "
                                                               f"il manque la ligne « {kind} »."))
    return topics, sorted(problems, key=lambda p: p.row)


# Plan ------------------------------------------------------------------------------------
@dataclass
class TopicChange:
    topic_id: str
    title: str
    new: bool
    added_examples: list[str]
    removed_examples: list[str]
    answer_before: str | None
    answer_after: str | None
    meta_changes: dict[str, tuple[str, str]]  # field -> (before, after)
    base_version: str | None
    after: TopicData

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic_id, "title": self.title, "new": self.new,
            "added_examples": self.added_examples, "removed_examples": self.removed_examples,
            "answer_before": self.answer_before, "answer_after": self.answer_after,
            "meta_changes": {k: list(v) for k, v in self.meta_changes.items()},
        }


@dataclass
class ImportPlan:
    filename: str
    rows: int
    row_errors: list[RowError]
    issues: list[Issue]
    changes: list[TopicChange]
    untouched: int  # existing topics not in the file

    @property
    def applicable(self) -> bool:
        return not self.row_errors and not errors(self.issues)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "new_topics": sum(c.new for c in self.changes),
            "changed_topics": sum(not c.new for c in self.changes),
            "added_examples": sum(len(c.added_examples) for c in self.changes if not c.new),
            "removed_examples": sum(len(c.removed_examples) for c in self.changes),
            "changed_answers": sum(c.answer_after is not None and not c.new for c in self.changes),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename, "rows": self.rows, "applicable": self.applicable,
            "summary": self.summary, "row_errors": [e.as_dict() for e in self.row_errors],
            "issues": [i.as_dict() for i in self.issues], "changes": [c.as_dict() for c in self.changes],
            "untouched": self.untouched,
        }


_META = (("titre", "title"), ("bouton", "label"), ("couvre", "covers"), ("source", "source"))


def _after(parsed: ParsedTopic, before: TopicData | None) -> tuple[TopicData, list[str]]:
    """The topic as the file describes it. For an existing topic, what the file leaves out
    stays as it is: no `question` row keeps the questions, no `réponse` row the answer."""
    examples, dropped = clean_examples(parsed.examples)
    if before is None:
        values = {attr: parsed.single.get(kind, "") for kind, attr in _META}
        return TopicData(id=parsed.id, domain=parsed.domain, origin=CONSOLE_ORIGIN, examples=tuple(examples),
                         answer=parsed.single.get("réponse", ""), **values), dropped
    values = {attr: parsed.single.get(kind, getattr(before, attr)) for kind, attr in _META}
    return replace(before, examples=tuple(examples) if parsed.examples else before.examples,
                   answer=parsed.single.get("réponse", before.answer), **values), dropped


def plan_import(editor: FaqEditor, data: bytes, filename: str) -> ImportPlan:
    """What importing this file would change, and every problem found; changes nothing."""
    existing = editor.topics()
    rows = read_rows(data, filename)
    parsed, row_errors = parse_rows(rows, existing)
    changes: list[TopicChange] = []
    proposed = dict(existing)
    dropped_of: dict[str, list[str]] = {}
    for topic_id, topic in parsed.items():
        before = existing.get(topic_id)
        after, dropped = _after(topic, before)
        dropped_of[topic_id] = dropped
        change = _change(before, after)
        if change:
            changes.append(change)
            proposed[topic_id] = after
    issues: list[Issue] = []
    if not row_errors:
        issues = _validate(editor, proposed, changes, dropped_of)
    return ImportPlan(filename, max(len(rows) - 1, 0), row_errors, issues, changes,
                      untouched=len([t for t in existing if t not in parsed]))


def _change(before: TopicData | None, after: TopicData) -> TopicChange | None:
    if before is None:
        return TopicChange(after.id, after.title, True, list(after.examples), [], None, after.answer,
                           {attr: ("", getattr(after, attr)) for _, attr in _META if getattr(after, attr)},
                           None, after)
    old_keys = {normalise(e) for e in before.examples}
    new_keys = {normalise(e) for e in after.examples}
    added = [e for e in after.examples if normalise(e) not in old_keys]
    removed = [e for e in before.examples if normalise(e) not in new_keys]
    meta = {attr: (getattr(before, attr), getattr(after, attr)) for _, attr in _META
            if getattr(before, attr) != getattr(after, attr)}
    answer_changed = before.answer != after.answer
    if before.version == after.version:
        return None
    return TopicChange(after.id, after.title or before.title, False, added, removed,
                       before.answer if answer_changed else None, after.answer if answer_changed else None,
                       meta, before.version, after)


def _validate(editor: FaqEditor, proposed: dict[str, TopicData], changes: list[TopicChange],
              dropped_of: dict[str, list[str]]) -> list[Issue]:
    index = ExampleIndex(proposed)
    public = public_set_keys(editor.public_set)
    issues: list[Issue] = []
    for change in changes:
        issues += check_topic(change.after, proposed, editor.commune, public, new_topic=change.new,
                              new_examples=change.added_examples, dropped=dropped_of.get(change.topic_id, ()),
                              index=index)
    return issues


def apply_import(editor: FaqEditor, plan: ImportPlan, actor: str) -> list[str]:
    """Applies a plan made by `plan_import`; returns the topics changed. Refused (nothing
    written) if the plan has problems or if one of its topics changed since."""
    if not plan.applicable:
        raise FaqError("L'import a des erreurs : corrigez le fichier puis refaites l'aperçu.")
    with editor.locked() as files:
        current = files.topics()
        for change in plan.changes:
            now = current.get(change.topic_id)
            if (change.new and now is not None) or (not change.new and (now is None or now.version != change.base_version)):
                raise EditConflict(
                    f"Le sujet « {change.title} » a été modifié depuis l'aperçu de l'import : "
                    "refaites l'aperçu pour voir les changements à jour.", now or change.after, ["answer"])
        proposed = {**current, **{c.topic_id: c.after for c in plan.changes}}
        issues = _validate(editor, proposed, plan.changes, {})
        if errors(issues):
            raise FaqError("L'import n'est plus valable : " + " ".join(i.message for i in errors(issues)[:3]))
        for change in plan.changes:
            topic = change.after
            files.set_examples(topic, list(topic.examples))
            files.set_answer(topic, topic.answer)
            files.set_catalog(topic)
        with session_scope(editor.database_url) as session:
            summary = plan.summary
            audit.record(session, actor, "import",
                         f"Import de « {plan.filename} » : {summary['new_topics']} nouveau(x) sujet(s), "
                         f"{summary['changed_topics']} sujet(s) modifié(s), {summary['added_examples']} question(s) "
                         f"ajoutée(s), {summary['removed_examples']} retirée(s), "
                         f"{summary['changed_answers']} réponse(s) modifiée(s)")
            for change in plan.changes:
                audit.record(session, actor, "import", f"« {change.title} » modifié par l'import de « {plan.filename} »",
                             change.topic_id, after=change.as_dict())
            files.save()
    return [c.topic_id for c in plan.changes]
