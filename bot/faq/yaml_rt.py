"""YAML round trip that keeps staff's files as they wrote them (ruamel.yaml).

Order, comments and block styles survive a load/dump. The indentation of each file is
detected (the FAQ files indent lists at 0, the catalog at 2) so that an untouched topic
stays byte for byte the same. Files are replaced atomically: a reader in another process
(the action server) sees the old file or the new one, never half of it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

# (mapping, sequence, offset): "- intent:" at the key's column, or indented by 2.
_STYLES = ((2, 2, 0), (2, 4, 2))


def _yaml(style: tuple[int, int, int]) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long lines
    yaml.indent(mapping=style[0], sequence=style[1], offset=style[2])
    return yaml


def _detect_style(text: str) -> tuple[int, int, int]:
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped.startswith("- ") and not line.startswith("#"):
            return _STYLES[1] if len(line) - len(stripped) >= 2 else _STYLES[0]
    return _STYLES[0]


class YamlDocument:
    """A YAML file loaded for editing; `save()` writes it back in the same style."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        self.text = text if text is not None else (path.read_text(encoding="utf-8") if path.exists() else "")
        self.style = _detect_style(self.text)
        self.data: Any = _yaml(self.style).load(self.text) if self.text.strip() else None

    def dumps(self) -> str:
        stream = io.StringIO()
        _yaml(self.style).dump(self.data, stream)
        return stream.getvalue()

    def save(self) -> bool:
        """Writes the file if its content changed; returns whether it did."""
        text = self.dumps()
        if text == self.text and self.path.exists():
            return False
        atomic_write(self.path, text)
        self.text = text
        return True


def atomic_write(path: Path, text: str) -> None:
    """Writes `text` to a temporary file next to `path`, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def literal(text: str) -> Any:
    """A multi-line string written as a `|` block (one example or paragraph per line)."""
    return LiteralScalarString(text) if "\n" in text else text
