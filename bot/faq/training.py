"""Train the Rasa model only when the data or configuration changed.

A model is named after a hash of everything that shapes it (config, domain, training
data, Rasa's version): `models/guichet-<hash>.tar.gz`. `ensure_model()` returns it,
training only when no model of that hash exists (locally or in the user cache
`GUICHET_MODEL_CACHE`, `~/.cache/guichet/models` by default; empty to disable).
The commune's settings and the catalog are not part of the hash: editing them needs no
training.

    python -m bot.faq.training            # ensure the model, print its path
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import yaml

from bot.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

MODEL_PREFIX = "guichet-"


def training_files(config: Path, domain: Path, data: Path) -> list[Path]:
    files = [config, domain, *component_sources(config)]
    files += sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in {".yml", ".yaml"})
    return files


def component_sources(config: Path) -> list[Path]:
    """The project's own Rasa components the configuration names (`bot.nlu.…`): a change
    of their code changes the model."""
    steps = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("pipeline") or []
    sources = []
    for step in steps:
        module = str(step.get("name", "")).rpartition(".")[0]
        path = PROJECT_ROOT / Path(*module.split(".")).with_suffix(".py") if module else None
        if path and path.is_file():
            sources.append(path)
    return sources


def fingerprint(config: Path, domain: Path, data: Path) -> str:
    digest = hashlib.sha256(f"rasa=={version('rasa')}".encode())
    for path in training_files(config, domain, data):
        digest.update(str(path.relative_to(data.parent) if path.is_relative_to(data.parent) else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path | None:
    value = os.environ.get("GUICHET_MODEL_CACHE", str(Path.home() / ".cache" / "guichet" / "models"))
    return Path(value).expanduser() if value else None


def train(
    config: Path, domain: Path, data: Path, out: Path, name: str, nlu_only: bool = False,
    on_output: Callable[[str], None] | None = None, reuse_cache: bool = True,
) -> Path:
    """Runs `rasa train` in a subprocess; returns the model path and logs the duration.
    `on_output` receives each line (and each progress-bar refresh) Rasa prints.
    `reuse_cache=False` turns off Rasa's training cache (`.rasa/cache`, which reuses the
    components whose inputs did not change): for honest training times."""
    env = None if reuse_cache else {**os.environ, "RASA_MAX_CACHE_SIZE": "0"}
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "rasa", "train", *(["nlu"] if nlu_only else []),
        "--config", str(config),
        *(["--domain", str(domain)] if not nlu_only else []),
        *(["--nlu", str(data)] if nlu_only else ["--data", str(data)]),
        "--out", str(out), "--fixed-model-name", name,
    ]
    started = time.monotonic()
    if on_output is None:
        subprocess.run(command, check=True, cwd=PROJECT_ROOT, env=env)
    else:
        _run_streaming(command, on_output, env)
    path = out / f"{name}.tar.gz"
    logger.info("Trained %s in %.0f s", path.name, time.monotonic() - started)
    if not path.exists():
        raise RuntimeError(f"rasa train produced no {path}")
    return path


def _run_streaming(command: list[str], on_output: Callable[[str], None], env: dict[str, str] | None = None) -> None:
    """Runs `command`, passing its output to `on_output` line by line ("\r" ends a line
    too: progress bars redraw with it); raises CalledProcessError like `check=True`."""
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    pending = b""
    try:
        while chunk := process.stdout.read1(4096):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for line in lines:
                if line.strip():
                    on_output(line.decode("utf-8", "replace"))
        if pending.strip():
            on_output(pending.decode("utf-8", "replace"))
    except BaseException:
        process.kill()
        process.wait()
        raise
    if process.wait() != 0:
        raise subprocess.CalledProcessError(process.returncode, command)


def model_path(
    config: Path = PROJECT_ROOT / "config.yml",
    domain: Path = PROJECT_ROOT / "domain.yml",
    data: Path = PROJECT_ROOT / "data",
    out: Path = PROJECT_ROOT / "models",
) -> Path:
    """Where the model of this data and configuration is (or will be, once trained)."""
    return out / f"{MODEL_PREFIX}{fingerprint(config, domain, data)}.tar.gz"


def ensure_model(
    config: Path = PROJECT_ROOT / "config.yml",
    domain: Path = PROJECT_ROOT / "domain.yml",
    data: Path = PROJECT_ROOT / "data",
    out: Path = PROJECT_ROOT / "models",
) -> Path:
    path = model_path(config, domain, data, out)
    name = path.name.removesuffix(".tar.gz")
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    # One training at a time: concurrent callers (parallel test runs) wait for it.
    with (out / ".training.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return path
        return _fetch_or_train(config, domain, data, out, name, path)


def _fetch_or_train(config: Path, domain: Path, data: Path, out: Path, name: str, path: Path) -> Path:
    cache = cache_dir()
    cached = cache / path.name if cache else None
    if cached and cached.exists():
        shutil.copy2(cached, path)
        logger.info("Model %s taken from the cache %s", path.name, cache)
        return path
    train(config, domain, data, out, name)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, cache / path.name)
    return path


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    print(ensure_model())


if __name__ == "__main__":
    main()
