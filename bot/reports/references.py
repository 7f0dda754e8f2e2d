"""References of reports and complaints (`SIG-7K2P`, `REC-4MZ9`), built like the handoff's
tickets (`RAP-…`, bot/handoff/references.py: same unambiguous alphabet and length), and
found again in whatever the citizen types ("où en est sig 7k2p ?")."""

from __future__ import annotations

import re
import secrets

from bot.handoff.references import ALPHABET, LENGTH
from bot.handoff.references import PREFIX as HANDOFF_PREFIX

REPORT_PREFIX = "SIG-"
COMPLAINT_PREFIX = "REC-"
PREFIXES = (REPORT_PREFIX, COMPLAINT_PREFIX, HANDOFF_PREFIX)
_CODES = "|".join(p.rstrip("-") for p in PREFIXES)
# A prefix, an optional separator, four characters: in any case, anywhere in a text.
_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9])({_CODES})[\s\-_.]?([A-Za-z0-9]{{{LENGTH}}})(?![A-Za-z0-9])", re.IGNORECASE)
_EXACT = re.compile(rf"^({_CODES})-[{ALPHABET}]{{{LENGTH}}}$")


def new_reference(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def is_reference(text: str) -> bool:
    return bool(_EXACT.match(text))


def find_references(text: str) -> list[str]:
    """The references quoted in `text`, normalised (`SIG-7K2P`), in order, without repeats."""
    found: list[str] = []
    for prefix, code in _IN_TEXT.findall(text or ""):
        reference = f"{prefix.upper()}-{code.upper()}"
        if is_reference(reference) and reference not in found:
            found.append(reference)
    return found
