"""The FAQ exported to CSV / XLSX and imported back: lossless, dry run first, bad rows
change nothing. On a copy of data/ in a temporary folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.faq import audit
from bot.faq.editing import EditConflict, FaqError
from bot.faq.spreadsheet import apply_import, export_csv, export_xlsx, plan_import
from tests.faq_support import FaqCopy, faq_copy, new_examples


@pytest.fixture
def faq(tmp_path: Path) -> FaqCopy:
    return faq_copy(tmp_path)


def csv_text(faq: FaqCopy) -> str:
    return export_csv(faq.editor.topics().values()).decode("utf-8-sig")


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def write(rows: list[list[str]]) -> str:
    stream = io.StringIO()
    csv.writer(stream, delimiter=";", lineterminator="\r\n").writerows(rows)
    return stream.getvalue()


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_export_then_import_changes_nothing(faq: FaqCopy, kind: str):
    topics = faq.editor.topics().values()
    data = export_csv(topics) if kind == "csv" else export_xlsx(topics)
    plan = plan_import(faq.editor, data, f"faq.{kind}")
    assert plan.applicable and plan.changes == [] and plan.row_errors == []
    assert plan.rows == sum(len(t.examples) + 2 + bool(t.label) + bool(t.covers) + bool(t.source) for t in topics)


def test_csv_is_excel_friendly(faq: FaqCopy):
    data = export_csv(faq.editor.topics().values())
    assert data.startswith("\ufeffdomaine;sujet;type;texte\r\n".encode())
    book = load_workbook(io.BytesIO(export_xlsx(faq.editor.topics().values())))
    assert book.sheetnames == ["FAQ", "Mode d'emploi"]
    assert [c.value for c in book["FAQ"][1]] == ["domaine", "sujet", "type", "texte"]


def test_round_trip_after_changes_is_lossless(faq: FaqCopy):
    """Edit in the spreadsheet, import, export again: the second export is the edited one."""
    text = csv_text(faq)
    text = text.replace("mairie;horaires_mairie;question;horaires mairie\r\n",
                        "mairie;horaires_mairie;question;horaires de la mairie le jeudi\r\n")
    text += "mairie;horaires_mairie;question;=la mairie ouvre le 1er mai ?\r\n"  # not a formula
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    assert plan.applicable, plan.as_dict()
    apply_import(faq.editor, plan, "alice")
    assert "=la mairie ouvre le 1er mai ?" in faq.editor.topic("horaires_mairie").examples
    again = csv_text(faq)
    assert "'=la mairie ouvre le 1er mai ?" in again  # quoted in the CSV so a spreadsheet shows it as text
    assert plan_import(faq.editor, again.encode("utf-8-sig"), "faq.csv").changes == []
    expected = sorted(text.replace("=la mairie", "'=la mairie").splitlines())
    assert sorted(again.splitlines()) == expected


def test_dry_run_reports_every_kind_of_change_before_applying(faq: FaqCopy):
    before = faq.snapshot()
    topics = faq.editor.topics()
    answer = topics["pacs"].answer.replace("Pacs", "PACS", 1)
    rows = read(csv_text(faq))
    rows = [r for r in rows if r != ["etat_civil", "cni", "question", "jai perdu ma cni"]]
    rows = [[*r[:3], answer] if r[1:3] == ["pacs", "réponse"] else r for r in rows]
    rows.append(["etat_civil", "cni", "question", "ma carte d'identité est périmée depuis hier"])
    rows += [["vie_locale", "pret_velo_cargo", "titre", "Prêt de vélos cargo"],
             ["vie_locale", "pret_velo_cargo", "réponse",
              "La commune prête des vélos cargo.\nPlus d'infos : https://www.service-public.fr/"]]
    rows += [["vie_locale", "pret_velo_cargo", "question", q] for q in new_examples("vélo cargo")]
    text = write(rows)
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    assert plan.row_errors == [], plan.row_errors
    assert plan.applicable, [i.message for i in plan.issues if i.blocking]
    changes = {c.topic_id: c for c in plan.changes}
    assert set(changes) == {"pacs", "cni", "pret_velo_cargo"}
    assert changes["pacs"].answer_after == answer and changes["pacs"].answer_before == topics["pacs"].answer
    assert changes["cni"].removed_examples == ["jai perdu ma cni"]
    assert changes["cni"].added_examples == ["ma carte d'identité est périmée depuis hier"]
    assert changes["pret_velo_cargo"].new and len(changes["pret_velo_cargo"].added_examples) == 15
    assert plan.summary == {"new_topics": 1, "changed_topics": 2, "added_examples": 1,
                            "removed_examples": 1, "changed_answers": 1}
    assert faq.snapshot() == before, "a dry run writes nothing"
    assert sorted(apply_import(faq.editor, plan, "alice")) == ["cni", "pacs", "pret_velo_cargo"]
    assert faq.editor.topic("pacs").answer == answer
    assert faq.editor.topic("pret_velo_cargo").origin == "console"
    assert [c.action for c in audit.history(faq.url)].count("import") == 4


def test_import_with_bad_rows_reports_them_and_changes_nothing(faq: FaqCopy):
    before = faq.snapshot()
    text = csv_text(faq)
    text = text.replace("mairie;horaires_mairie;question;horaires mairie\r\n", "mairie;horaires_mairie;question;nouvelle question valable\r\n")
    bad = [
        "mairie;horaires_mairie;remarque;un type inconnu",
        "mairie;;question;sans sujet",
        "etat_civil;horaires_mairie;question;mauvais domaine",
        ";nouveau_sujet;titre;sans domaine",
        "mairie;Sujet Invalide;titre;identifiant invalide",
        "mairie;horaires_mairie;réponse;seconde réponse",
        "mairie;contact_mairie;question;",
    ]
    text += "\r\n".join(bad) + "\r\n"
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    assert not plan.applicable
    rows = {e.row: e.message for e in plan.row_errors}
    first_bad = len(text.split("\r\n")) - len(bad)
    assert sorted(rows) == list(range(first_bad, first_bad + len(bad)))
    messages = list(rows.values())
    assert "Type « remarque » inconnu" in messages[0]
    assert "colonne « sujet » est vide" in messages[1]
    assert "est dans le domaine « mairie »" in messages[2]
    assert "indiquez son domaine" in messages[3]
    assert "identifiant de sujet valide" in messages[4]
    assert "une seule est possible" in messages[5]
    assert "Question vide" in messages[6]
    with pytest.raises(FaqError, match="erreurs"):
        apply_import(faq.editor, plan, "alice")
    assert faq.snapshot() == before
    assert audit.history(faq.url) == []


def test_import_breaking_a_rule_reports_it_and_changes_nothing(faq: FaqCopy):
    before = faq.snapshot()
    text = csv_text(faq)
    text += "mairie;contact_mairie;question;Horaires mairie !\r\n"  # already an example of horaires_mairie
    text = text.replace("etat_civil;pacs;réponse;", "etat_civil;pacs;ancienne;", 1)
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    assert not plan.applicable
    assert any("Type « ancienne » inconnu" in e.message for e in plan.row_errors)
    text = text.replace("etat_civil;pacs;ancienne;", "etat_civil;pacs;réponse;", 1)
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    assert plan.row_errors == [] and not plan.applicable
    assert any("déjà un exemple du sujet" in i.message for i in plan.issues if i.blocking)
    with pytest.raises(FaqError):
        apply_import(faq.editor, plan, "alice")
    assert faq.snapshot() == before


def test_apply_is_refused_if_the_faq_changed_since_the_dry_run(faq: FaqCopy):
    text = csv_text(faq) + "mairie;horaires_mairie;question;la mairie ouvre le lundi de pâques ?\r\n"
    plan = plan_import(faq.editor, text.encode("utf-8-sig"), "faq.csv")
    faq.editor.add_examples("horaires_mairie", ["ouvert le 14 juillet ?"], "bob")
    before = faq.snapshot()
    with pytest.raises(EditConflict, match="refaites l'aperçu"):
        apply_import(faq.editor, plan, "alice")
    assert faq.snapshot() == before


def test_windows_csv_with_commas_and_header_aliases(faq: FaqCopy):
    """A spreadsheet of one topic, saved by Excel in Windows-1252 with commas."""
    rows = [r for r in read(csv_text(faq)) if r[1] == "horaires_mairie"]
    rows = [["Domain", "Topic", "Kind", "Text"], *rows, ["mairie", "horaires_mairie", "Question", "ouvert à Pâques ?"]]
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\r\n").writerows(rows)
    plan = plan_import(faq.editor, stream.getvalue().encode("cp1252"), "export.csv")
    assert plan.applicable and plan.untouched == len(faq.editor.topics()) - 1
    [change] = plan.changes
    assert change.added_examples == ["ouvert à Pâques ?"] and change.removed_examples == []
    # Question rows replace the topic's list: one question alone would leave too few.
    rows = [rows[0], ["mairie", "horaires_mairie", "question", "ouvert à Pâques ?"]]
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\r\n").writerows(rows)
    plan = plan_import(faq.editor, stream.getvalue().encode("cp1252"), "export.csv")
    assert not plan.applicable
    assert any("au moins 15 exemples" in i.message for i in plan.issues if i.blocking)


def test_unreadable_files_get_a_clear_message(faq: FaqCopy):
    with pytest.raises(FaqError, match="classeur Excel"):
        plan_import(faq.editor, b"PK\x03\x04 not really a zip", "faq.xlsx")
    plan = plan_import(faq.editor, b"", "faq.csv")
    assert plan.row_errors[0].message == "Le fichier est vide."
    plan = plan_import(faq.editor, b"nom;valeur\r\na;b\r\n", "faq.csv")
    assert "Colonnes manquantes" in plan.row_errors[0].message
