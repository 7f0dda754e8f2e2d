"""Rasa's own checks on the training data and the dialogue, with the trained model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bot.settings import PROJECT_ROOT

# Both come from Rasa's handling of retrieval intents and cannot be avoided: the domain
# must list `faq`, which Rasa then also adds from the NLU files; and FAQ answers go
# through `action_faq` (to fill in the commune's facts) instead of Rasa's `utter_faq`.
KNOWN_WARNINGS = (
    "duplicated intents have been found across multiple domain files: faq",
    "The utterance 'utter_faq' is not used in any story or rule",
)


def rasa(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rasa", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )


def test_rasa_data_validate_is_clean():
    result = rasa("data", "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    warnings = re.findall(r"UserWarning: (.*)", output)
    unexpected = [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)]
    assert unexpected == []


def test_end_to_end_test_stories_pass(model_path: Path, tmp_path: Path):
    result = rasa(
        "test", "core", "--model", str(model_path), "--stories", "tests/e2e/test_stories.yml",
        "--out", str(tmp_path), "--fail-on-prediction-errors",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    failed = (tmp_path / "failed_test_stories.yml").read_text(encoding="utf-8")
    assert "none of the test stories failed" in failed.lower() or failed.strip() == "", failed
