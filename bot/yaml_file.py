"""A YAML file re-read when it changes on disk (edits go live without a restart)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

T = TypeVar("T")


class ReloadingFile(Generic[T]):
    """Parses `path` with `parse` and re-parses it whenever its mtime or size changes."""

    def __init__(self, path: Path, parse: Callable[[Any], T]) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._value: T | None = None

    def get(self) -> T:
        stat = self.path.stat()
        # The inode too: an atomic replace (rename) is a new inode, whatever the clock says.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp or self._value is None:
                with self.path.open(encoding="utf-8") as handle:
                    self._value = self._parse(yaml.safe_load(handle))
                self._stamp = stamp
            return self._value
