"""`make run` (bot.launcher) from a clean copy of the project: every process starts, the
assistant answers, the action server listens on the loopback only, Ctrl-C stops it all."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bot.settings import PROJECT_ROOT
from tests.conftest import free_port, wait_http

# What a clone holds (no .git, no virtual environment, no local data).
COPIED = ("actions", "bot", "data", "commune.yml", "config.yml", "domain.yml", "endpoints.yml",
          "credentials.yml", ".env.example")


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks an interface
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def clone(tmp_path: Path, model_path: Path) -> Path:
    root = tmp_path / "guichet"
    root.mkdir()
    for name in COPIED:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "models").mkdir()
    shutil.copy2(model_path, root / "models" / model_path.name)  # the model of this data: no training
    return root


def test_make_run_starts_everything_answers_and_stops_cleanly(clone: Path):
    ports = {name: free_port() for name in ("GUICHET_RASA_PORT", "GUICHET_ACTION_PORT", "GUICHET_CONSOLE_PORT")}
    token, api_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUICHET_")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(GUICHET_RASA_TOKEN=token, GUICHET_API_TOKEN=api_token, PYTHONPATH=str(clone),
               GUICHET_MODEL_CACHE="")
    launcher = subprocess.Popen([sys.executable, "-m", "bot.launcher"], cwd=clone, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    rasa = f"http://127.0.0.1:{ports['GUICHET_RASA_PORT']}"
    try:
        wait_http(f"http://127.0.0.1:{ports['GUICHET_CONSOLE_PORT']}/healthz", launcher, timeout=300)
        assert (clone / ".env").stat().st_mode & 0o777 == 0o600  # first run: secrets created
        status = requests.get(f"{rasa}/status", params={"token": token}, timeout=10).json()
        assert status["model_file"].endswith(next((clone / "models").glob("*.tar.gz")).name)
        answer = requests.post(f"{rasa}/webhooks/api/webhook", headers={"Authorization": f"Bearer {api_token}"},
                               json={"sender": "launcher-test", "message": "bonjour"}, timeout=60)
        assert answer.status_code == 200 and "assistant automatique" in answer.json()[0]["text"]
        action_port = ports["GUICHET_ACTION_PORT"]
        assert requests.get(f"http://127.0.0.1:{action_port}/health", timeout=5).ok
        if (address := non_loopback_address()) is not None:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"http://{address}:{action_port}/health", timeout=5)
    finally:
        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            output = launcher.communicate(timeout=60)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    assert launcher.returncode == 0, output[-3000:]
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-s", str(launcher.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
