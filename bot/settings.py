"""Configuration from the environment (a `.env` file is read if present).

Every tunable of the project is read here, once, so that the rest of the code never
touches `os.environ` directly. `.env.example` documents each variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent

load_dotenv(PROJECT_ROOT / ".env", override=False)


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with `Settings.from_env()`."""

    commune_file: Path
    faq_dir: Path
    catalog_file: Path
    # Below this ResponseSelector confidence an FAQ answer is not given: the citizen is
    # offered the likely topics instead (tuned with `make eval`).
    faq_min_confidence: float
    # Bearer token for the `api` REST channel; the channel refuses every request if unset.
    api_token: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            commune_file=_path("GUICHET_COMMUNE_FILE", PROJECT_ROOT / "commune.yml"),
            faq_dir=_path("GUICHET_FAQ_DIR", PROJECT_ROOT / "data" / "faq"),
            catalog_file=_path("GUICHET_CATALOG_FILE", PROJECT_ROOT / "bot" / "faq" / "catalog.yml"),
            faq_min_confidence=_float("GUICHET_FAQ_MIN_CONFIDENCE", 0.35),
            api_token=os.environ.get("GUICHET_API_TOKEN", ""),
        )


def get_settings() -> Settings:
    return Settings.from_env()
