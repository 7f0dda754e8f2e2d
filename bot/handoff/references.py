"""Short, unambiguous references for tickets: `RAP-7K2P`.

The alphabet leaves out the characters people confuse when reading or dictating them
(0/O, 1/I/L, and U/V), so a citizen can read a reference over the phone.
"""

from __future__ import annotations

import re
import secrets

PREFIX = "RAP-"
ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
LENGTH = 4
PATTERN = re.compile(rf"^{PREFIX}[{ALPHABET}]{{{LENGTH}}}$")


def new_reference() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalise_reference(text: str) -> str | None:
    """`rap 7k2p`, `RAP7K2P`, `7K2P` -> `RAP-7K2P`; None if it cannot be one."""
    compact = re.sub(r"[\s\-_.]", "", text.upper())
    if compact.startswith(PREFIX[:-1]):
        compact = compact[len(PREFIX) - 1:]
    if len(compact) != LENGTH:
        return None
    candidate = PREFIX + compact
    if PATTERN.match(candidate):
        return candidate
    return None
