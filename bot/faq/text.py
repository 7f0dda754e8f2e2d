"""Comparing citizens' sentences the way the NLU sees them: case, accents and punctuation
do not matter (`strip_accents: unicode`, lowercase, whitespace tokens)."""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Lowercase, no accents, punctuation as spaces, single spaces: "Où ?" -> "ou"."""
    text = unicodedata.normalize("NFKD", str(text).lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(_NOT_WORD.sub(" ", text).replace("_", " ").split())


def token_bag(text: str) -> str:
    """The normalised words in alphabetical order: "mairie horaires" == "horaires mairie"."""
    return " ".join(sorted(normalise(text).split()))


def clean_line(text: str) -> str:
    """One example line: no line breaks, single spaces, no leading list dash."""
    text = " ".join(str(text).split())
    return text[2:].strip() if text.startswith("- ") else text


def clean_answer(text: str) -> str:
    """An answer as stored: LF line breaks, no trailing spaces, no blank edges."""
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()
