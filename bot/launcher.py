"""Start Guichet on one machine: the action server and the Rasa server.

    python -m bot.launcher          # `make run`
    python -m bot.launcher --shell  # `make shell`: chat in the terminal

Trains the model first if none matches the current data. Creates `.env` with random
secrets on the first run. Stops every process it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bot.settings import PROJECT_ROOT

logger = logging.getLogger("guichet")

GENERATED_SECRETS = ("GUICHET_API_TOKEN", "GUICHET_RASA_TOKEN")


def ensure_env_file(path: Path = PROJECT_ROOT / ".env") -> None:
    """Creates `.env` from `.env.example` with fresh random secrets if it is missing."""
    if path.exists():
        return
    lines = []
    for line in (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        key = line.split("=", 1)[0]
        if key in GENERATED_SECRETS:
            line = f"{key}={secrets.token_urlsafe(32)}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    logger.info("Created %s with random secrets", path)


def wait_http(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process {process.args[:4]} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    args = parser.parse_args()

    ensure_env_file()
    from dotenv import load_dotenv

    load_dotenv(PROJECT_ROOT / ".env", override=False)
    from bot.faq.training import ensure_model

    model = ensure_model()
    (PROJECT_ROOT / "var").mkdir(exist_ok=True)
    host = os.environ.get("GUICHET_HOST", "127.0.0.1")
    rasa_port = os.environ.get("GUICHET_RASA_PORT", "5005")
    action_port = os.environ.get("GUICHET_ACTION_PORT", "5055")
    python = sys.executable

    processes: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    actions = subprocess.Popen(
        [python, "-m", "rasa_sdk", "--actions", "actions", "--port", action_port], cwd=PROJECT_ROOT
    )
    processes.append(actions)
    wait_http(f"http://127.0.0.1:{action_port}/health", actions)

    common = ["--model", str(model), "--endpoints", "endpoints.yml"]
    if args.shell:
        shell = subprocess.Popen([python, "-m", "rasa", "shell", *common], cwd=PROJECT_ROOT)
        processes.append(shell)
        shell.wait()
        stop()
    server = [
        python, "-m", "rasa", "run", *common, "--credentials", "credentials.yml",
        "--interface", host, "--port", rasa_port, "--enable-api",
        "--auth-token", os.environ["GUICHET_RASA_TOKEN"],
    ]
    rasa = subprocess.Popen(server, cwd=PROJECT_ROOT)
    processes.append(rasa)
    wait_http(f"http://127.0.0.1:{rasa_port}/", rasa)
    logger.info(
        "Guichet is running: Rasa on http://%s:%s (channel `api`: /webhooks/api/webhook), "
        "actions on :%s. Ctrl-C to stop.", host, rasa_port, action_port,
    )
    while all(p.poll() is None for p in processes):
        time.sleep(1)
    logger.error("A process stopped; stopping the others")
    stop()


if __name__ == "__main__":
    main()
