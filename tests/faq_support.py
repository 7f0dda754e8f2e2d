"""Helpers of the FAQ editor tests: a copy of the FAQ and a database in a temporary folder
(the real data/faq files are never touched by a test)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.commune import Commune
from bot.db.migrate import upgrade
from bot.faq.documents import FaqPaths
from bot.faq.editing import FaqEditor
from bot.settings import PROJECT_ROOT
from bot.yaml_file import ReloadingFile


@dataclass
class FaqCopy:
    root: Path
    editor: FaqEditor
    url: str

    @property
    def faq_dir(self) -> Path:
        return self.root / "data" / "faq"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.yml"

    def snapshot(self) -> dict[str, bytes]:
        files = [*sorted(self.faq_dir.glob("*.yml")), self.catalog]
        return {str(p.relative_to(self.root)): p.read_bytes() for p in files}


def faq_copy(root: Path, url: str | None = None) -> FaqCopy:
    """data/ and the catalog copied under `root`, a migrated SQLite database, an editor."""
    shutil.copytree(PROJECT_ROOT / "data", root / "data")
    shutil.copy(PROJECT_ROOT / "bot" / "faq" / "catalog.yml", root / "catalog.yml")
    url = url or f"sqlite:///{root / 'guichet.db'}"
    upgrade(url)
    commune = ReloadingFile(PROJECT_ROOT / "commune.yml", Commune.from_dict)
    editor = FaqEditor(FaqPaths(root / "data", root / "catalog.yml"), url, commune=commune.get)
    return FaqCopy(root, editor, url)


def new_examples(prefix: str, count: int = 15) -> list[str]:
    """`count` distinct questions nobody else asks (for new topics)."""
    subjects = ["trottinette", "vélo cargo", "ruche", "poulailler", "composteur", "barbecue", "piano",
                "kayak", "serre", "potager", "drone", "feu d'artifice", "brocante", "karaoké", "tipi",
                "yourte", "jacuzzi", "éolienne", "pergola", "abri de jardin"]
    return [f"{prefix} {subject} numéro {i} ?" for i, subject in enumerate(subjects[:count])]
