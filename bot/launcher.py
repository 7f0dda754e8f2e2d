"""Start Guichet on one machine: the action server and the Rasa server.

    python -m bot.launcher          # `make run`
    python -m bot.launcher --shell  # `make shell`: chat in the terminal
    python -m bot.launcher --simulators  # `make run-sim`: Messenger/Instagram on a local Graph API

Starts four processes: the action server, the Rasa server, the agents' console
(bot/console) and the broadcast worker (bot/broadcast), after applying the database
migrations (`python -m bot.db upgrade`).
Serves the model last published from the console (`models/live.json`: it passed the
publication's quality gate, so a restart must not replace it with an unchecked one);
otherwise the model of the current data, trained first if none matches. Creates `.env`
with random secrets on the first run. Stops every process it started on Ctrl-C or SIGTERM.
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

GENERATED_SECRETS = (
    "GUICHET_API_TOKEN", "GUICHET_RASA_TOKEN", "GUICHET_TELEGRAM_WEBHOOK_SECRET", "GUICHET_WHATSAPP_VERIFY_TOKEN",
)


def startup_model(models_dir: Path = PROJECT_ROOT / "models") -> Path:
    """The published model if there is one, else the current data's model (trained if needed)."""
    from bot.faq.publishing import live_model
    from bot.faq.training import ensure_model, model_path

    published = live_model(models_dir)
    if published is None:
        return ensure_model(out=models_dir)
    if published != model_path(out=models_dir):
        logger.warning(
            "Serving the model published from the console (%s); the data has changed since. "
            "Publish from the console (or delete %s) to serve the current data.",
            published.name, models_dir / "live.json",
        )
    return published


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


def runtime_endpoints(action_port: str) -> Path:
    """endpoints.yml with the action server's URL on the port actually used."""
    import yaml

    endpoints = yaml.safe_load((PROJECT_ROOT / "endpoints.yml").read_text(encoding="utf-8"))
    endpoints["action_endpoint"]["url"] = f"http://127.0.0.1:{action_port}/webhook"
    path = PROJECT_ROOT / "var" / "endpoints.yml"
    path.write_text(yaml.safe_dump(endpoints, sort_keys=False), encoding="utf-8")
    return path


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


def start_graph_simulator(python: str, rasa_port: str) -> subprocess.Popen:
    """`--simulators`: the local Graph API (tests/simulators/graph_api.py) plays Meta for the
    Messenger and Instagram channels; secrets left unset get random values for this run."""
    port = os.environ.get("GUICHET_GRAPH_SIM_PORT") or "5099"
    for name in ("GUICHET_MESSENGER_PAGE_TOKEN", "GUICHET_MESSENGER_APP_SECRET", "GUICHET_MESSENGER_VERIFY_TOKEN"):
        os.environ[name] = os.environ.get(name) or secrets.token_urlsafe(24)
    for name in ("GUICHET_INSTAGRAM_ACCESS_TOKEN", "GUICHET_INSTAGRAM_APP_SECRET", "GUICHET_INSTAGRAM_VERIFY_TOKEN"):
        os.environ[name] = ""  # the simulator is one app: Instagram uses Messenger's secrets
    os.environ["GUICHET_GRAPH_API_URL"] = f"http://127.0.0.1:{port}"
    simulator = subprocess.Popen(
        [python, "-m", "tests.simulators.graph_api", "--port", port, "--bot-url", f"http://127.0.0.1:{rasa_port}"],
        cwd=PROJECT_ROOT,
    )
    wait_http(f"http://127.0.0.1:{port}/_sim/sent", simulator)
    logger.info("Graph API simulator on :%s: try `make say MSG=\"horaires de la mairie ?\"`", port)
    return simulator


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shell", action="store_true", help="chat in the terminal")
    parser.add_argument(
        "--simulators", action="store_true",
        help="play Meta locally: Messenger and Instagram talk to the Graph API simulator (make run-sim)",
    )
    args = parser.parse_args()

    ensure_env_file()
    from dotenv import load_dotenv

    load_dotenv(PROJECT_ROOT / ".env", override=False)
    model = startup_model()
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

    if args.simulators:
        processes.append(start_graph_simulator(python, rasa_port))

    # The project's tables (handoff, console) next to Rasa's tracker store: migrations first.
    subprocess.run([python, "-m", "bot.db", "upgrade"], cwd=PROJECT_ROOT, check=True)
    # rasa_sdk listens on SANIC_HOST (0.0.0.0 by default) and has no authentication: only
    # the Rasa server may call it, so it listens on the loopback unless told otherwise.
    action_env = {**os.environ, "SANIC_HOST": os.environ.get("GUICHET_ACTION_HOST", "127.0.0.1")}
    actions = subprocess.Popen(
        [python, "-m", "rasa_sdk", "--actions", "actions", "--port", action_port], cwd=PROJECT_ROOT, env=action_env
    )
    processes.append(actions)
    wait_http(f"http://127.0.0.1:{action_port}/health", actions)

    endpoints = runtime_endpoints(action_port)
    common = ["--model", str(model), "--endpoints", str(endpoints)]
    if args.shell:
        shell = subprocess.Popen([python, "-m", "bot.rasa_server", "shell", *common], cwd=PROJECT_ROOT)
        processes.append(shell)
        shell.wait()
        stop()
    server = [
        python, "-m", "bot.rasa_server", "run", *common, "--credentials", "credentials.yml",
        "--interface", host, "--port", rasa_port, "--enable-api",
        # "=" form: a random token may start with "-", which argparse would take for an option.
        f"--auth-token={os.environ['GUICHET_RASA_TOKEN']}",
    ]
    rasa = subprocess.Popen(server, cwd=PROJECT_ROOT)
    processes.append(rasa)
    wait_http(f"http://127.0.0.1:{rasa_port}/", rasa)
    console_port = os.environ.get("GUICHET_CONSOLE_PORT", "5080")
    console = subprocess.Popen([python, "-m", "bot.console"], cwd=PROJECT_ROOT)
    processes.append(console)
    wait_http(f"http://127.0.0.1:{console_port}/healthz", console)
    # Sends the broadcasts queued in the console (alerts and news, consultations).
    processes.append(subprocess.Popen([python, "-m", "bot.broadcast", "worker"], cwd=PROJECT_ROOT))
    logger.info(
        "Agents' console on http://%s:%s (first account: python -m bot.console.admin create-user --role admin)",
        os.environ.get("GUICHET_CONSOLE_HOST") or host, console_port,
    )
    logger.info(
        "Guichet is running: Rasa on http://%s:%s (channel `api`: /webhooks/api/webhook), "
        "actions on :%s. Ctrl-C to stop.", host, rasa_port, action_port,
    )
    logger.info("Website chat demo: http://%s:%s/webhooks/webchat/demo", host, rasa_port)
    while all(p.poll() is None for p in processes):
        time.sleep(1)
    logger.error("A process stopped; stopping the others")
    stop()


if __name__ == "__main__":
    main()
