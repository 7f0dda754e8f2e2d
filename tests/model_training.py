"""The model, trained in the background while the tests that need none run.

Training the model from scratch (CI has no model cache) takes minutes, and most tests
need no model. `start()` launches `python -m bot.faq.training` at the lowest CPU
priority, so the tests running meanwhile keep their speed and the training takes the
time they leave (waiting on servers, on the network, on a browser); `conftest.py` runs
the tests that need no model first. `wait()` is what the `model_path` fixture calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bot.settings import PROJECT_ROOT

_process: subprocess.Popen | None = None
_log: Path | None = None


def start() -> None:
    """Starts training the current data's model unless it exists (or is being trained)."""
    global _process, _log
    from bot.faq.training import model_path

    if _process is not None or model_path().exists():
        return
    fd, name = tempfile.mkstemp(prefix="guichet-training-", suffix=".log")
    _log = Path(name)
    with os.fdopen(fd, "wb") as log:
        _process = subprocess.Popen(
            [sys.executable, "-m", "bot.faq.training"], cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.nice(19),
        )


def wait() -> Path:
    """The model's path, once the background training (if any) has ended."""
    from bot.faq.training import ensure_model

    if _process is not None:
        if _process.wait() != 0:
            tail = _log.read_text(encoding="utf-8", errors="replace")[-4000:] if _log else ""
            raise RuntimeError(f"training the model failed (exit {_process.returncode}):\n{tail}")
        if _log:
            _log.unlink(missing_ok=True)
    return ensure_model()


def stop() -> None:
    """Ends an unfinished training (a run stopped early); the model file is only
    written at the end of a training, so nothing half-written is left."""
    if _process is not None and _process.poll() is None:
        _process.terminate()
        try:
            _process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _process.kill()
            _process.wait()
