"""Start Guichet as a production cluster on one machine (`make run-cluster`).

    python -m bot.cluster

Rasa's production layout, with Rasa's own parts: Rasa server replicas sharing the
tracker store in PostgreSQL and a Redis lock store (one conversation is handled by one
replica at a time, in order), stateless action servers, nginx in front of both, the
agents' console and the broadcast worker. Webhook de-duplication (bot/channels/
webhook_tools.py) and the web chat's Socket.IO rooms go through Redis too, so any
replica can receive a redelivery or push an agent's message to a web chat citizen.

    citizens, Meta, Telegram ──> nginx :5005 ──> Rasa replicas :5105, :5106 ──┐
    (web chat /socket.io/: sticky by client address)                          │
                               nginx :5055 (loopback) ──> action servers :5155, :5156
    console :5080 ──> nginx :5005 (API), every replica directly to publish a model

Everything comes from environment variables (.env): `GUICHET_DATABASE_URL` (default
`postgresql://postgres@127.0.0.1:5432/guichet`, created if missing),
`GUICHET_REDIS_URL` (default `redis://127.0.0.1:6379/1`), `GUICHET_CLUSTER_REPLICAS` (2),
`GUICHET_CLUSTER_ACTION_SERVERS` (2), `GUICHET_CLUSTER_BASE_PORT` (5100: replicas from
5105, action servers from 5155), `GUICHET_RASA_PORT` (5005, nginx), `GUICHET_ACTION_PORT`
(5055, nginx), `GUICHET_SANIC_WORKERS` (1 per replica), `TICKET_LOCK_LIFETIME` (Rasa's,
20 s here). Files go to `var/cluster/`.
nginx is Debian's package (`make nginx` installs it). Ctrl-C stops everything.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import URL, make_url

from bot.launcher import ensure_env_file, startup_model, wait_http
from bot.settings import PROJECT_ROOT

logger = logging.getLogger("guichet.cluster")

DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/guichet"
DEFAULT_REDIS = "redis://127.0.0.1:6379/1"
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
WORKER_USER, WORKER_GROUP = "nobody", "nogroup"


@dataclass
class Layout:
    """Ports and addresses of every process, from the environment."""

    database_url: str
    redis_url: str
    host: str = "127.0.0.1"
    public_port: int = 5005
    action_port: int = 5055
    console_port: int = 5080
    replica_ports: list[int] = field(default_factory=list)
    action_ports: list[int] = field(default_factory=list)
    workdir: Path = PROJECT_ROOT / "var" / "cluster"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Layout:
        base = int(environ.get("GUICHET_CLUSTER_BASE_PORT") or 5100)
        replicas = int(environ.get("GUICHET_CLUSTER_REPLICAS") or 2)
        actions = int(environ.get("GUICHET_CLUSTER_ACTION_SERVERS") or 2)
        return cls(
            database_url=environ.get("GUICHET_DATABASE_URL") or DEFAULT_DATABASE,
            redis_url=environ.get("GUICHET_REDIS_URL") or DEFAULT_REDIS,
            host=environ.get("GUICHET_HOST") or "127.0.0.1",
            public_port=int(environ.get("GUICHET_RASA_PORT") or 5005),
            action_port=int(environ.get("GUICHET_ACTION_PORT") or 5055),
            console_port=int(environ.get("GUICHET_CONSOLE_PORT") or 5080),
            replica_ports=[base + 5 + i for i in range(replicas)],
            action_ports=[base + 55 + i for i in range(actions)],
            workdir=Path(environ.get("GUICHET_CLUSTER_DIR") or PROJECT_ROOT / "var" / "cluster"),
        )

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.replica_ports]


def ensure_database(url: str) -> None:
    """Creates the PostgreSQL database of `url` if it does not exist (as Rasa's login_db does)."""
    import psycopg2

    target = make_url(url)
    if not target.drivername.startswith("postgresql"):
        raise SystemExit(f"The cluster needs PostgreSQL (GUICHET_DATABASE_URL={target.render_as_string()})")
    login = target.set(database="postgres")
    connection = psycopg2.connect(
        host=login.host, port=login.port or 5432, user=login.username, password=login.password, dbname="postgres",
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target.database,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{target.database}"')
                logger.info("Created PostgreSQL database %s", target.database)
    finally:
        connection.close()


def endpoints(layout: Layout) -> dict[str, Any]:
    """Rasa's endpoints.yml: SQL tracker store on PostgreSQL, Redis lock store, the
    action servers behind nginx."""
    db: URL = make_url(layout.database_url)
    redis: URL = make_url(layout.redis_url)
    tracker_store: dict[str, Any] = {
        # Rasa's SQL tracker store that checks its connections (PostgreSQL restarts).
        "type": "bot.tracker_store.ResilientSQLTrackerStore", "dialect": "postgresql",
        "url": db.host or "127.0.0.1", "port": db.port or 5432,
        "db": db.database, "username": db.username, "password": db.password or "",
    }
    if db.query:
        tracker_store["query"] = dict(db.query)
    return {
        "action_endpoint": {"url": f"http://127.0.0.1:{layout.action_port}/webhook"},
        "tracker_store": tracker_store,
        "lock_store": {
            # Rasa's Redis lock store that carries on in memory while Redis is down.
            "type": "bot.lock_store.ResilientRedisLockStore", "url": redis.host or "127.0.0.1",
            "port": redis.port or 6379,
            "db": int(redis.database or 0), "password": redis.password, "key_prefix": "guichet",
        },
    }


def nginx_config(layout: Layout) -> str:
    """nginx in front of the replicas and the action servers. A POST already sent to a
    replica is never sent again to another (nginx's default for non-idempotent requests):
    a webhook retried by Meta is de-duplicated through Redis instead."""
    prefix = layout.workdir / "nginx"
    replicas = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in layout.replica_ports)
    actions = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in layout.action_ports)
    proxy = """proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;"""
    # Started as root, nginx's workers run as an unprivileged user, which owns the temp dirs.
    user = f"user {WORKER_USER} {WORKER_GROUP};\n" if os.geteuid() == 0 else ""
    return f"""# Generated by bot/cluster.py: do not edit (edit the code or use docs/deployment.md).
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  # No access log: webhook paths and "mes données" links carry identifiers and keys.
  access_log off;
  client_max_body_size 4m;
  client_body_buffer_size 1m;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  upstream rasa {{
{replicas}
    keepalive 64;
  }}
  # Socket.IO (web chat): a client stays on one replica (its Engine.IO session lives there).
  upstream rasa_sticky {{
    hash $remote_addr consistent;
{replicas}
  }}
  upstream actions {{
{actions}
    keepalive 32;
    # Closed by nginx before the action server (Sanic: 5 s) closes them: a request sent on a
    # connection the server is closing is reset, and a POST is not retried (a 502, seen once
    # in 2,000 messages, and the citizen got the safety net's contact details).
    keepalive_timeout 4s;
  }}
  server {{
    listen {layout.host}:{layout.public_port};
    location = /nginx-health {{ return 200 "ok\\n"; }}
    # Prometheus scrapes each replica on its own port, never through the public address.
    location ^~ /webhooks/metrics {{ return 404; }}
    location /socket.io/ {{
      proxy_pass http://rasa_sticky;
      {proxy}
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 120s;
    }}
    location / {{
      proxy_pass http://rasa;
      {proxy}
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503;
      proxy_read_timeout 90s;
    }}
  }}
  server {{
    listen 127.0.0.1:{layout.action_port};
    location / {{
      proxy_pass http://actions;
      {proxy}
      proxy_set_header Connection "";
      proxy_next_upstream error timeout;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""


def write_files(layout: Layout) -> tuple[Path, Path]:
    nginx_dir = layout.workdir / "nginx"
    for name in TEMP_DIRS:
        (nginx_dir / name).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(nginx_dir / name, pwd.getpwnam(WORKER_USER).pw_uid, grp.getgrnam(WORKER_GROUP).gr_gid)
    endpoints_file = layout.workdir / "endpoints.yml"
    endpoints_file.write_text(yaml.safe_dump(endpoints(layout), sort_keys=False), encoding="utf-8")
    endpoints_file.chmod(0o600)  # may hold the database password
    nginx_file = nginx_dir / "nginx.conf"
    nginx_file.write_text(nginx_config(layout), encoding="utf-8")
    return endpoints_file, nginx_file


def find_nginx() -> str | None:
    """nginx's path (Debian puts it in /usr/sbin, outside a user's PATH), or None."""
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_binary() -> str:
    found = find_nginx()
    if not found:
        raise SystemExit("nginx is not installed: run `make nginx` (Debian's package) or install it")
    return found


class Cluster:
    """The processes of one cluster; `stop()` ends them all."""

    def __init__(self, layout: Layout, model: Path, environ: Mapping[str, str] = os.environ) -> None:
        self.layout = layout
        self.model = model
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {
            **environ,
            "GUICHET_DATABASE_URL": layout.database_url,
            "GUICHET_REDIS_URL": layout.redis_url,
            "GUICHET_RASA_URL": layout.public_url,
            # The console publishes a new model to every replica, each swapped in turn.
            "GUICHET_RASA_REPLICAS": ",".join(layout.replica_urls()),
        }
        self.env.setdefault("GUICHET_PUBLIC_URL", layout.public_url)
        # How long a killed replica's conversation locks (Rasa's Redis lock store) hold
        # their conversations: Rasa's default is 60 s; a message is processed in seconds.
        self.env.setdefault("TICKET_LOCK_LIFETIME", "20")

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.layout.workdir / f"{name}.log").open("ab")
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env or self.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        self.processes[name] = process
        return process

    def start_action_server(self, index: int) -> subprocess.Popen:
        port = self.layout.action_ports[index]
        env = {**self.env, "SANIC_HOST": "127.0.0.1"}  # rasa_sdk has no authentication
        return self._spawn(f"actions-{index + 1}", [
            sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)], env)

    def start_replica(self, index: int, endpoints_file: Path) -> subprocess.Popen:
        port = self.layout.replica_ports[index]
        env = {**self.env, "SANIC_WORKERS": self.env.get("GUICHET_SANIC_WORKERS") or "1"}
        return self._spawn(f"rasa-{index + 1}", [
            sys.executable, "-m", "bot.rasa_server", "run", "--model", str(self.model), "--endpoints", str(endpoints_file),
            "--credentials", "credentials.yml", "--interface", "127.0.0.1", "--port", str(port), "--enable-api",
            f"--auth-token={self.env['GUICHET_RASA_TOKEN']}",
        ], env)

    def start(self) -> None:
        layout = self.layout
        layout.workdir.mkdir(parents=True, exist_ok=True)
        ensure_database(layout.database_url)
        subprocess.run([sys.executable, "-m", "bot.db", "upgrade"], cwd=PROJECT_ROOT, env=self.env, check=True)
        endpoints_file, nginx_file = write_files(layout)
        nginx = nginx_binary()
        subprocess.run([nginx, "-t", "-q", "-c", str(nginx_file), "-p", str(nginx_file.parent)], check=True,
                       capture_output=True)
        actions = [self.start_action_server(i) for i in range(len(layout.action_ports))]
        for port, process in zip(layout.action_ports, actions, strict=True):
            wait_http(f"http://127.0.0.1:{port}/health", process)
        replicas = [self.start_replica(i, endpoints_file) for i in range(len(layout.replica_ports))]
        for url, process in zip(layout.replica_urls(), replicas, strict=True):
            wait_http(f"{url}/", process, timeout=300)
        proxy = self._spawn("nginx", [nginx, "-c", str(nginx_file), "-p", str(nginx_file.parent),
                                      "-g", "daemon off;"])
        wait_http(f"{layout.public_url}/nginx-health", proxy)
        console = self._spawn("console", [sys.executable, "-m", "bot.console"])
        wait_http(f"http://127.0.0.1:{layout.console_port}/healthz", console)
        self._spawn("broadcast", [sys.executable, "-m", "bot.broadcast", "worker"])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ensure_env_file()
    from dotenv import load_dotenv

    load_dotenv(PROJECT_ROOT / ".env", override=False)
    layout = Layout.from_env()
    cluster = Cluster(layout, startup_model())

    def stop(*_: object) -> None:
        cluster.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    logger.info("Guichet cluster: nginx on http://%s:%s -> Rasa replicas %s, actions %s; console on :%s; "
                "logs in %s. Ctrl-C to stop.", layout.host, layout.public_port, layout.replica_ports,
                layout.action_ports, layout.console_port, layout.workdir)
    while not cluster.exited():
        time.sleep(1)
    logger.error("%s stopped; stopping the others", ", ".join(cluster.exited()))
    stop()


if __name__ == "__main__":
    main()
