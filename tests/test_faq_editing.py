"""Editing the FAQ files: round trip, validation, concurrent editors, audit, preview.

Every test works on a copy of data/ and of the catalog in a temporary folder."""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path

import pytest

from bot.faq import audit
from bot.faq.documents import FaqFiles
from bot.faq.editing import EditConflict, FaqError, TopicNotFound, ValidationFailed
from bot.faq.preview import preview
from bot.faq.store import FaqStore
from tests.faq_support import FaqCopy, faq_copy, new_examples


@pytest.fixture
def faq(tmp_path: Path) -> FaqCopy:
    return faq_copy(tmp_path)


def messages(excinfo: pytest.ExceptionInfo) -> str:
    return " ".join(i.message for i in excinfo.value.issues if i.blocking)


# Round trip ----------------------------------------------------------------------------------
def test_load_and_save_without_change_is_byte_identical(faq: FaqCopy):
    before = faq.snapshot()
    files = FaqFiles(faq.editor.paths)
    for doc in [*files.files.values(), files.catalog]:
        assert doc.dumps() == doc.text, f"{doc.path.name} would be rewritten"
    assert faq.snapshot() == before


def test_an_edit_changes_only_its_lines_and_keeps_comments_and_order(faq: FaqCopy):
    path = faq.faq_dir / "mairie.yml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("- intent: faq/contact_mairie", "# Coordonnées : vérifiées en mars\n- intent: faq/contact_mairie")
    path.write_text(text, encoding="utf-8")
    catalog_before = faq.catalog.read_text(encoding="utf-8")
    topic = faq.editor.topic("horaires_mairie")
    new_answer = topic.answer.replace("La mairie est fermée les jours fériés.",
                                      "La mairie est fermée les jours fériés et le 26 décembre.")
    faq.editor.save_topic("horaires_mairie", "alice", topic.version, answer=new_answer,
                          add_examples=["vous ouvrez le 26 décembre ?"])
    after = path.read_text(encoding="utf-8")
    assert "# Coordonnées : vérifiées en mars\n- intent: faq/contact_mairie" in after
    old_lines, new_lines = text.splitlines(), after.splitlines()
    added = [line for line in new_lines if line not in old_lines]
    removed = [line for line in old_lines if line not in new_lines]
    assert added == ["    - vous ouvrez le 26 décembre ?",
                     "      La mairie est fermée les jours fériés et le 26 décembre."]
    assert removed == ["      La mairie est fermée les jours fériés."]
    intents = re.findall(r"intent: (faq/\w+)", after)
    assert intents == re.findall(r"intent: (faq/\w+)", text)
    assert faq.catalog.read_text(encoding="utf-8") == catalog_before


def test_catalog_edit_keeps_its_comments_and_style(faq: FaqCopy):
    topic = faq.editor.topic("cni")
    faq.editor.save_topic("cni", "alice", topic.version, label="Carte d'identité")
    text = faq.catalog.read_text(encoding="utf-8")
    assert text.startswith("# FAQ topic catalog")
    assert "  - id: cni\n    titre: Carte nationale d'identité" in text
    assert "    bouton: Carte d'identité\n" in text
    assert faq.editor.topic("cni").label == "Carte d'identité"


def test_a_saved_answer_is_what_the_action_server_reads_next(faq: FaqCopy):
    store = FaqStore(faq.faq_dir, faq.catalog)
    assert "jours fériés" in store.answer("horaires_mairie")
    for n in range(3):  # several saves within the same clock tick are all seen
        topic = faq.editor.topic("horaires_mairie")
        faq.editor.save_topic("horaires_mairie", "alice", topic.version,
                              answer=f"Version {n} : ouvert {{horaires}}.\nPlus d'infos : {{site_web}}")
        assert store.answer("horaires_mairie") == f"Version {n} : ouvert {{horaires}}.\nPlus d'infos : {{site_web}}"


# Validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("   ", "La réponse est vide"),
        ("Appelez le {telephon}.\nPlus d'infos : {site_web}", "{telephon} n'existe pas"),
        ("Appelez le {telephone.\nPlus d'infos : {site_web}", "Accolade isolée"),
        ("Voir http://www.service-public.fr/x", "doit commencer par https://"),
        ("Voir www.service-public.fr/x", "doit commencer par https://"),
        ("Voir https://localhost/x", "pas une adresse de site valide"),
        ("Voir ftp://service-public.fr/x", "n'est pas une adresse web https://"),
        ("Une réponse sans lien.", "Ajoutez le lien officiel"),
        ("Horaires : {horaires}. " * 12 + "\nPlus d'infos : {site_web}", "caractères une fois les champs remplis"),
    ],
)
def test_bad_answers_are_refused_with_a_clear_message(faq: FaqCopy, answer: str, expected: str):
    before = faq.snapshot()
    topic = faq.editor.topic("horaires_mairie")
    with pytest.raises(ValidationFailed) as excinfo:
        faq.editor.save_topic("horaires_mairie", "alice", topic.version, answer=answer)
    assert expected in messages(excinfo)
    assert faq.snapshot() == before


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("HORAIRES   Mairie !!", "déjà un exemple du sujet « Horaires d'ouverture de la mairie »"),
        ("Horaires de la mairie ?", None),  # accepted in its own topic below
        ("mairie horaires", "a les mêmes mots qu'un exemple du sujet"),
        ("comment faire un passeport ?", "jeu d'évaluation public"),
        ("je veux [une carte](cni)", "crochets"),
        ("/faq", "ne peut pas commencer par « / »"),
    ],
)
def test_conflicting_examples_are_refused(faq: FaqCopy, example: str, expected: str | None):
    before = faq.snapshot()
    if expected is None:
        result = faq.editor.add_examples("horaires_mairie", [example], "alice")
        assert example in result.topic.examples
        return
    with pytest.raises(ValidationFailed) as excinfo:
        faq.editor.add_examples("contact_mairie", [example], "alice")
    assert expected in messages(excinfo)
    assert faq.snapshot() == before


def test_too_few_examples_and_duplicates_within_a_topic(faq: FaqCopy):
    topic = faq.editor.topic("pacs")
    with pytest.raises(ValidationFailed) as excinfo:
        faq.editor.save_topic("pacs", "alice", topic.version, examples=list(topic.examples[:14]))
    assert "au moins 15 exemples" in messages(excinfo)
    doubled = [*topic.examples, topic.examples[0].upper() + " ?"]
    result = faq.editor.save_topic("pacs", "alice", topic.version, examples=doubled)
    assert result.written == []  # the duplicate was dropped: nothing changed
    assert "Doublons retirés" in " ".join(w.message for w in result.warnings)


def test_near_duplicate_of_another_topic_is_a_warning(faq: FaqCopy):
    result = faq.editor.add_examples("contact_mairie", ["mairie ouverte samedi"], "alice")
    assert "ressemble beaucoup" in " ".join(w.message for w in result.warnings)
    assert "mairie ouverte samedi" in faq.editor.topic("contact_mairie").examples


def test_an_existing_problem_elsewhere_does_not_block_an_edit(faq: FaqCopy):
    path = faq.faq_dir / "etat_civil.yml"
    topic = faq.editor.topic("pacs")
    text = path.read_text(encoding="utf-8").replace(topic.answer.splitlines()[0], "Pacs : voir http://x.fr")
    path.write_text(text, encoding="utf-8")
    topic = faq.editor.topic("pacs")
    result = faq.editor.add_examples("pacs", ["on peut se pacser le samedi ?"], "alice")
    assert any("https" in w.message for w in result.warnings)
    assert "on peut se pacser le samedi ?" in faq.editor.topic("pacs").examples


# Topics ----------------------------------------------------------------------------------------
def test_add_and_remove_a_topic(faq: FaqCopy):
    store = FaqStore(faq.faq_dir, faq.catalog)
    answer = "La commune de {commune} prête des vélos cargo le samedi.\nPlus d'infos : https://www.service-public.fr/"
    result = faq.editor.add_topic("alice", "pret_velo_cargo", "vie_locale", "Prêt de vélos cargo", answer,
                                  new_examples("prêt vélo cargo"), label="Prêt de vélos cargo")
    assert result.topic.origin == "console"
    catalog = faq.catalog.read_text(encoding="utf-8")
    assert "  - id: pret_velo_cargo\n    titre: Prêt de vélos cargo\n    bouton: Prêt de vélos cargo\n    origine: console\n" in catalog
    assert "- intent: faq/pret_velo_cargo" in (faq.faq_dir / "vie_locale.yml").read_text(encoding="utf-8")
    assert store.answer("pret_velo_cargo") == answer
    assert store.topic("pret_velo_cargo").label == "Prêt de vélos cargo"
    with pytest.raises(ValidationFailed) as excinfo:
        faq.editor.add_topic("bob", "pret_velo_cargo", "vie_locale", "Encore", answer, new_examples("autre"))
    assert "existe déjà" in messages(excinfo)

    with pytest.raises(FaqError, match="catalogue de référence"):
        faq.editor.remove_topic("cni", "alice", faq.editor.topic("cni").version)
    faq.editor.remove_topic("pret_velo_cargo", "alice", faq.editor.topic("pret_velo_cargo").version)
    assert "pret_velo_cargo" not in faq.catalog.read_text(encoding="utf-8")
    assert store.answer("pret_velo_cargo") is None
    with pytest.raises(TopicNotFound):
        faq.editor.topic("pret_velo_cargo")


def test_a_topic_in_a_new_domain_gets_its_own_file(faq: FaqCopy):
    answer = "Le marché a lieu le dimanche.\nPlus d'infos : https://www.service-public.fr/"
    faq.editor.add_topic("alice", "marche", "commerce", "Marché du dimanche", answer, new_examples("marché"))
    text = (faq.faq_dir / "commerce.yml").read_text(encoding="utf-8")
    assert text.startswith('version: "3.1"\nnlu:\n- intent: faq/marche\n  examples: |\n    - marché')
    assert faq.editor.topic("marche").domain == "commerce"


@pytest.mark.parametrize(
    ("topic_id", "domain", "title", "label", "expected"),
    [
        ("Carte Grise", "vie_locale", "Carte grise", "", "identifiant du sujet"),
        ("carte_grise", "Vie Locale", "Carte grise", "", "Le domaine"),
        ("carte_grise", "vie_locale", " ", "", "titre du sujet est vide"),
        ("carte_grise", "vie_locale", "Carte grise", "Certificat d'immatriculation", "Messenger"),
    ],
)
def test_new_topic_fields_are_checked(faq: FaqCopy, topic_id, domain, title, label, expected):
    answer = "Voir l'ANTS.\nPlus d'infos : https://ants.gouv.fr/"
    with pytest.raises(ValidationFailed) as excinfo:
        faq.editor.add_topic("alice", topic_id, domain, title, answer, new_examples("carte grise"), label=label)
    assert expected in messages(excinfo)


# Concurrency -----------------------------------------------------------------------------------
def test_a_stale_edit_of_the_same_part_is_refused_with_who_changed_it(faq: FaqCopy):
    opened_by_alice = faq.editor.topic("horaires_mairie")
    opened_by_bob = faq.editor.topic("horaires_mairie")
    faq.editor.save_topic("horaires_mairie", "alice", opened_by_alice.version,
                          answer=opened_by_alice.answer + "\nMerci.")
    with pytest.raises(EditConflict) as excinfo:
        faq.editor.save_topic("horaires_mairie", "bob", opened_by_bob.version, answer="Autre.\nPlus d'infos : {site_web}")
    assert "alice a modifié la réponse" in str(excinfo.value)
    assert excinfo.value.current.answer.endswith("Merci.")
    # Bob's change to another part of the same topic is kept along with Alice's.
    faq.editor.save_topic("horaires_mairie", "bob", opened_by_bob.version, title="Horaires de la mairie")
    topic = faq.editor.topic("horaires_mairie")
    assert topic.answer.endswith("Merci.") and topic.title == "Horaires de la mairie"


def _editor_process(root: str, actor: str, topic_id: str, rounds: int, queue) -> None:  # noqa: ANN001
    from bot.commune import Commune
    from bot.faq.documents import FaqPaths
    from bot.faq.editing import EditConflict, FaqEditor
    from bot.settings import PROJECT_ROOT
    from bot.yaml_file import ReloadingFile

    commune = ReloadingFile(PROJECT_ROOT / "commune.yml", Commune.from_dict)
    base = Path(root)
    editor = FaqEditor(FaqPaths(base / "data", base / "catalog.yml"), f"sqlite:///{base / 'guichet.db'}",
                       commune=commune.get)
    conflicts = 0
    for n in range(rounds):
        # Both editors add questions to the shared topic (no version needed: they commute)…
        editor.add_examples("horaires_mairie", [f"question de {actor} numéro {n} sur les horaires"], actor)
        # …and rewrite the answer of their own topic, in the same file, from a fresh read.
        while True:
            topic = editor.topic(topic_id)
            answer = f"Réponse {n} de {actor}.\nPlus d'infos : {{site_web}}"
            try:
                editor.save_topic(topic_id, actor, topic.version, answer=answer)
                break
            except EditConflict:  # cannot happen: nobody else edits this answer
                conflicts += 1
    queue.put(conflicts)


def test_two_editors_at_once_lose_no_change(faq: FaqCopy):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    rounds = 6
    editors = [
        context.Process(target=_editor_process, args=(str(faq.root), actor, topic, rounds, queue))
        for actor, topic in (("alice", "contact_mairie"), ("bob", "rendez_vous"))
    ]
    for process in editors:
        process.start()
    for process in editors:
        process.join(timeout=300)
        assert process.exitcode == 0
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [0, 0]
    examples = faq.editor.topic("horaires_mairie").examples
    for actor in ("alice", "bob"):
        for n in range(rounds):
            assert f"question de {actor} numéro {n} sur les horaires" in examples
    assert faq.editor.topic("contact_mairie").answer.startswith(f"Réponse {rounds - 1} de alice.")
    assert faq.editor.topic("rendez_vous").answer.startswith(f"Réponse {rounds - 1} de bob.")
    assert len(audit.history(faq.url, limit=1000)) == 4 * rounds


# Audit, search, preview ----------------------------------------------------------------------------
def test_every_change_is_in_the_audit_log(faq: FaqCopy):
    topic = faq.editor.topic("passeport")
    faq.editor.save_topic("passeport", "alice", topic.version, answer=topic.answer + "\nÀ bientôt.")
    faq.editor.add_examples("passeport", ["passeport pour un bébé de 3 mois"], "bob")
    changes = audit.history(faq.url, "passeport")
    assert [(c.actor, c.action) for c in changes] == [("bob", "add_examples"), ("alice", "edit")]
    assert changes[1].before == {"answer": topic.answer}
    assert changes[1].after == {"answer": topic.answer + "\nÀ bientôt."}
    assert "1 question(s) ajoutée(s)" in changes[0].summary
    summary = {s.topic.id: s for s in faq.editor.summaries(domain="etat_civil")}
    assert summary["passeport"].changed_by == "bob" and summary["cni"].changed_by is None


def test_search_ignores_accents_and_case(faq: FaqCopy):
    found = [s.topic.id for s in faq.editor.summaries("CARTE d'identite")]
    assert "cni" in found
    assert all(s.topic.domain == "mairie" for s in faq.editor.summaries(domain="mairie"))


def test_messenger_preview_uses_the_connector_splitting(faq: FaqCopy):
    commune = faq.editor.commune
    shown = preview("Bonjour de {commune} !\nPlus d'infos : {site_web}", commune)
    assert shown.messenger == [shown.rendered] and commune.name in shown.rendered and not shown.issues
    long = "\n\n".join(f"Paragraphe {i} : " + "texte " * 60 for i in range(8))
    shown = preview(long, commune)
    assert len(shown.messenger) >= 2 and all(len(part) < 2000 for part in shown.messenger)
    assert len(shown.instagram) > len(shown.messenger)  # Instagram: 1000 bytes per message
    assert any("Ajoutez le lien officiel" in i.message for i in shown.issues)


def test_full_forms_from_two_editors_keep_both_changes(faq: FaqCopy):
    """The console's form sends every field: only what each editor changed is saved."""
    opened = faq.editor.topic("rendez_vous")
    form = {"answer": opened.answer, "examples": list(opened.examples), "title": opened.title, "label": opened.label}
    faq.editor.save_form("rendez_vous", "alice", opened.version,
                         **{**form, "answer": opened.answer.replace("\n", "\r\n") + "\r\nMerci de votre visite."})
    faq.editor.save_form("rendez_vous", "bob", opened.version,
                         **{**form, "examples": [*form["examples"], "rdv pour un certificat d'hérédité"]})
    topic = faq.editor.topic("rendez_vous")
    assert topic.answer.endswith("Merci de votre visite.")
    assert "rdv pour un certificat d'hérédité" in topic.examples
    with pytest.raises(EditConflict, match="bob a modifié les questions"):
        faq.editor.save_form("rendez_vous", "carla", opened.version,
                             **{**form, "examples": form["examples"][1:] + ["rdv le samedi matin svp"]})
