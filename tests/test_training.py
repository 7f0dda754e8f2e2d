"""The model cache: retrain when the data or config change, never for commune facts."""

import shutil
from pathlib import Path

from bot.faq.training import component_sources, fingerprint, training_files
from bot.settings import PROJECT_ROOT


def copy_project(tmp_path: Path) -> Path:
    for name in ("config.yml", "domain.yml", "commune.yml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(PROJECT_ROOT / "data", tmp_path / "data")
    return tmp_path


def hash_of(root: Path) -> str:
    return fingerprint(root / "config.yml", root / "domain.yml", root / "data")


def test_hash_is_stable_and_follows_training_inputs(tmp_path):
    root = copy_project(tmp_path)
    first = hash_of(root)
    assert hash_of(root) == first
    (root / "commune.yml").write_text("nom: Ailleurs\n", encoding="utf-8")
    assert hash_of(root) == first, "commune facts must not trigger a retraining"
    faq = root / "data" / "faq" / "mairie.yml"
    faq.write_text(faq.read_text(encoding="utf-8") + "\n# edit\n", encoding="utf-8")
    assert hash_of(root) != first


def test_training_inputs_are_config_domain_and_data():
    files = training_files(PROJECT_ROOT / "config.yml", PROJECT_ROOT / "domain.yml", PROJECT_ROOT / "data")
    names = {f.name for f in files}
    assert {"config.yml", "domain.yml", "rules.yml", "core.yml", "etat_civil.yml"} <= names
    assert "commune.yml" not in names
    # The project's own component named in config.yml: a change of its code retrains.
    assert PROJECT_ROOT / "bot" / "nlu" / "topic_selector.py" in files


def test_only_the_components_a_config_names_are_hashed(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("pipeline:\n- name: WhitespaceTokenizer\n- name: bot.nlu.topic_selector.LinearTopicSelector\n"
                      "- name: some.module.that.does.not.Exist\n", encoding="utf-8")
    assert component_sources(config) == [PROJECT_ROOT / "bot" / "nlu" / "topic_selector.py"]
    config.write_text("recipe: default.v1\npipeline:\npolicies:\n", encoding="utf-8")  # Rasa's defaults
    assert component_sources(config) == []


def test_make_run_serves_the_published_model_else_the_current_datas(tmp_path):
    import json

    from bot.faq.training import model_path
    from bot.launcher import startup_model

    current = model_path(out=tmp_path)
    current.write_bytes(b"model of the current data")  # found: nothing to train
    assert startup_model(tmp_path) == current
    published = tmp_path / "guichet-0123456789abcdef.tar.gz"
    published.write_bytes(b"model published from the console")
    (tmp_path / "live.json").write_text(json.dumps({"model_file": str(published), "publication": 3}))
    assert startup_model(tmp_path) == published  # a restart keeps the checked model
    published.unlink()  # its file is gone: back to the current data's model
    assert startup_model(tmp_path) == current
