import datetime as dt
import os
import time
from pathlib import Path

import pytest
import yaml

from bot.commune import Commune, CommuneError, load_commune
from bot.settings import PROJECT_ROOT


@pytest.fixture
def facts() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "commune.yml").read_text(encoding="utf-8"))


def test_demo_commune_loads_with_its_contact_details(facts):
    commune = Commune.from_dict(facts)
    assert commune.name == "Bellerive-sur-Ondine"
    assert commune.value("telephone") == facts["mairie"]["telephone"]
    assert facts["mairie"]["adresse"] in commune.contact_text()
    assert facts["mairie"]["telephone"] in commune.contact_text()


def test_hours_group_identical_days_and_name_closed_days(facts):
    text = Commune.from_dict(facts).hours_text()
    assert text.startswith("lundi, mardi et jeudi : 8 h 30 - 12 h et 13 h 30 - 17 h 30")
    assert "mercredi : 8 h 30 - 12 h" in text
    assert text.endswith("fermé le dimanche")


def test_only_upcoming_closures_are_announced(facts):
    facts["fermetures"] = [
        {"du": "2020-01-02", "au": "2020-01-03", "motif": "passée"},
        {"du": "2030-05-02", "au": "2030-05-02", "motif": "pont"},
    ]
    commune = Commune.from_dict(facts)
    text = commune.closures_text(today=dt.date(2026, 1, 1))
    assert "passée" not in text
    assert "le 2 mai 2030 (pont)" in text
    assert commune.closures_text(today=dt.date(2031, 1, 1)) == "aucune fermeture exceptionnelle prévue"


def test_placeholders_resolve_dotted_paths_and_computed_values(facts):
    commune = Commune.from_dict(facts)
    rendered = commune.render("Cantine : {tarifs.cantine}. Appelez le {telephone} ({horaires}).")
    assert facts["tarifs"]["cantine"] in rendered
    assert facts["mairie"]["telephone"] in rendered
    assert "{" not in rendered


def test_unknown_placeholder_is_reported_and_never_shown_to_citizens(facts):
    commune = Commune.from_dict(facts)
    assert commune.check("Tarif : {tarifs.inexistant} {telephone}") == ["tarifs.inexistant"]
    rendered = commune.render("Tarif : {tarifs.inexistant}")
    assert "{" not in rendered and facts["mairie"]["telephone"] in rendered
    with pytest.raises(CommuneError):
        commune.value("tarifs.inexistant")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.pop("mairie"), "mairie"),
        (lambda f: f["mairie"].pop("telephone"), "telephone"),
        (lambda f: f["horaires"].update(lundi=["18:00-08:00"]), "ends before"),
        (lambda f: f["horaires"].update(lundi=["8h-12h"]), "HH:MM"),
        (lambda f: f["horaires"].update(funday=[]), "weekdays"),
        (lambda f: f.update(fermetures=[{"du": "demain"}]), "YYYY-MM-DD"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(facts, change, message):
    change(facts)
    with pytest.raises(CommuneError, match=message):
        Commune.from_dict(facts)


def test_edited_file_is_reloaded_without_restart(tmp_path: Path, facts):
    path = tmp_path / "commune.yml"
    path.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
    assert load_commune(path).phone == facts["mairie"]["telephone"]
    facts["mairie"]["telephone"] = "01 23 45 67 89"
    path.write_text(yaml.safe_dump(facts, allow_unicode=True), encoding="utf-8")
    future = time.time() + 5
    os.utime(path, (future, future))
    assert load_commune(path).phone == "01 23 45 67 89"
