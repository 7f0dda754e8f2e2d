"""The container files (Dockerfile, docker-compose.yml, deploy/nginx.conf), checked
without Docker (there is no Docker daemon here nor in CI):

- docker-compose.yml is valid against the Compose Specification schema (deploy/compose-spec.json);
- every command runs a real module of the project, the way bot/cluster.py runs it;
- Rasa's endpoints (inline config) are the ones bot/cluster.py writes, read by Rasa itself;
- nginx's upstreams are compose services on the ports they listen on, and its rules are
  those bot/cluster.py generates; `nginx -t` accepts the file (skipped without nginx);
- every variable passed to a container is read by the code (or by Rasa / the image);
- no secret is written in the compose file; the Dockerfile's COPY sources exist.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft201909Validator

from bot.cluster import Cluster, Layout, endpoints, find_nginx, nginx_config
from bot.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
NGINX_FILE = PROJECT_ROOT / "deploy" / "nginx.conf"
SCHEMA_FILE = PROJECT_ROOT / "deploy" / "compose-spec.json"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
IMAGE = "${GUICHET_IMAGE:-guichet:latest}"
# ${NAME}, ${NAME:-default}, ${NAME:?message} (Compose's interpolation; $$ escapes a $).
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def guichet_services(compose: dict) -> dict[str, dict]:
    """The services that run the project's image (not postgres, redis, nginx)."""
    return {name: s for name, s in compose["services"].items() if s.get("image") == IMAGE}


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """What Compose makes of a value: defaults applied, `$$` unescaped."""
    env = env or {}

    def value_of(match: re.Match) -> str:
        default = match.group(3) if match.group(2) in (":-", "-") else ""
        return env.get(match.group(1)) or default

    return VARIABLE.sub(value_of, value).replace("$$", "$")


def python_commands(service: dict) -> list[list[str]]:
    """The `python ...` command lines a service runs (directly or through `sh -c`)."""
    command = service["command"]
    if command[0] == "python":
        return [command]
    assert command[:2] == ["sh", "-c"], command
    script = interpolate(command[2])
    found = [["python", "-c", code] for code in re.findall(r"python -c '([^']*)'", script)]
    found.append(shlex.split(script.split("exec ", 1)[1]))
    return found


def listening_port(service: dict) -> int:
    command = python_commands(service)[-1]
    return int(command[command.index("--port") + 1])


def services_running(guichet_services: dict[str, dict], module: str) -> dict[str, dict]:
    return {name: s for name, s in guichet_services.items() if python_commands(s)[-1][:3] == ["python", "-m", module]}


def nginx_upstreams(text: str) -> dict[str, list[tuple[str, int]]]:
    return {
        name: [(host, int(port)) for host, port in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", body, re.MULTILINE)]
        for name, body in re.findall(r"upstream\s+(\w+)\s*\{(.*?)\}", text, re.DOTALL)
    }


# -- The Compose Specification ----------------------------------------------------------------
def test_compose_file_is_valid_against_the_compose_specification(compose: dict) -> None:
    validator = Draft201909Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema does catch mistakes (it is not an empty schema that accepts anything).
    assert not validator.is_valid({"services": {"x": {"image": "y", "depends_on": {"z": {"condition": "up"}}}}})
    assert not validator.is_valid({"services": {"x": {"image": "y", "restart_policy": "always"}}})


def test_dependencies_name_services_and_wait_for_health(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a missing service {dependency}"
            one_shot = services[dependency].get("restart") == "no"
            expected = "service_completed_successfully" if one_shot else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
            if expected == "service_healthy":
                assert "healthcheck" in services[dependency], dependency
    # The build context and the bind mounts exist.
    for service in services.values():
        if "build" in service:
            assert (PROJECT_ROOT / service["build"] / "Dockerfile").is_file()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (PROJECT_ROOT / source).exists(), source
            else:
                assert source in compose["volumes"], source


# -- Commands -------------------------------------------------------------------------------
def test_every_command_runs_a_real_module_of_the_project(guichet_services: dict[str, dict]) -> None:
    for name, service in guichet_services.items():
        for command in python_commands(service):
            assert command[0] == "python", name
            if command[1] == "-m":
                module = command[2]
                spec = importlib.util.find_spec(module)
                assert spec is not None, f"{name}: no module {module}"
                if spec.submodule_search_locations:  # a package: run through its __main__
                    assert importlib.util.find_spec(f"{module}.__main__") is not None, module
                if module.split(".")[0] in {"bot", "actions"}:
                    assert Path(spec.origin).is_relative_to(PROJECT_ROOT), module
            else:
                assert command[1] == "-c", name
                for node in ast.walk(ast.parse(command[2])):
                    if isinstance(node, ast.ImportFrom):
                        module = importlib.import_module(node.module)
                        for alias in node.names:
                            assert hasattr(module, alias.name), f"{name}: {node.module}.{alias.name}"
    # Files and packages named in the arguments exist.
    actions = python_commands(guichet_services["actions-1"])[-1]
    assert (PROJECT_ROOT / actions[actions.index("--actions") + 1] / "__init__.py").is_file()
    rasa = python_commands(guichet_services["rasa-1"])[-1]
    assert (PROJECT_ROOT / rasa[rasa.index("--credentials") + 1]).is_file()
    mounted = {config["target"] for config in guichet_services["rasa-1"]["configs"]}
    assert rasa[rasa.index("--endpoints") + 1] in mounted


def test_commands_are_the_ones_bot_cluster_runs(guichet_services: dict[str, dict]) -> None:
    """Same processes, same arguments as `make run-cluster` (only addresses differ)."""
    spawned: dict[str, tuple[list[str], dict[str, str]]] = {}
    cluster = Cluster(Layout("postgresql://db/guichet", "redis://redis/1", replica_ports=[5105],
                             action_ports=[5155]), Path("models/m.tar.gz"), environ={"GUICHET_RASA_TOKEN": "t"})
    cluster._spawn = lambda name, command, env=None: spawned.setdefault(name, (command[1:], env))  # type: ignore[method-assign]
    cluster.start_replica(0, Path("endpoints.yml"))
    cluster.start_action_server(0)

    def options(argv: list[str]) -> list[str]:
        return [arg.split("=")[0] for arg in argv if arg.startswith("--")]

    rasa_cluster, rasa_env = spawned["rasa-1"]
    for name in services_running(guichet_services, "bot.rasa_server"):
        model_code, rasa = python_commands(guichet_services[name])
        assert rasa[1:4] == rasa_cluster[:3] == ["-m", "bot.rasa_server", "run"]
        assert options(rasa) == options(rasa_cluster)
        assert rasa[rasa.index("--credentials") + 1] == "credentials.yml"
        # The model: the one bot.cluster.main() starts with (launcher.startup_model).
        assert "startup_model()" in model_code[2]
        assert rasa[rasa.index("--model") + 1] == "$model"
        assert rasa[-1] == "--auth-token=$GUICHET_RASA_TOKEN"
        assert "SANIC_WORKERS" in rasa_env and "SANIC_WORKERS" in guichet_services[name]["environment"]
    actions_cluster, actions_env = spawned["actions-1"]
    for name in services_running(guichet_services, "rasa_sdk"):
        command = python_commands(guichet_services[name])[-1]
        assert command[1:-1] == actions_cluster[:-1]  # all but the port
        assert "SANIC_HOST" in actions_env and "SANIC_HOST" in guichet_services[name]["environment"]
    # The other processes bot/cluster.py starts: migrations, console, broadcast worker.
    source = (PROJECT_ROOT / "bot" / "cluster.py").read_text(encoding="utf-8")
    for name in ("migrate", "console", "broadcast"):
        argv = guichet_services[name]["command"][1:]
        assert "[sys.executable, " + ", ".join(f'"{arg}"' for arg in argv) + "]" in source, name
    # Every process gets the variables bot/cluster.py gives all of its processes.
    replicas = services_running(guichet_services, "bot.rasa_server")
    for name, service in guichet_services.items():
        expected = set(cluster.env) if name in replicas else set(cluster.env) - {"TICKET_LOCK_LIFETIME"}
        assert expected <= set(service["environment"]), f"{name}: {expected - set(service['environment'])}"


def test_rasa_reads_the_endpoints_bot_cluster_writes(compose: dict, monkeypatch, tmp_path: Path) -> None:
    from rasa.shared.utils.io import read_config_file

    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
    path = tmp_path / "endpoints.yml"
    path.write_text(interpolate(compose["configs"]["rasa-endpoints"]["content"]), encoding="utf-8")
    read = read_config_file(str(path))
    env = compose["services"]["rasa-1"]["environment"]
    database = interpolate(env["GUICHET_DATABASE_URL"], {"POSTGRES_PASSWORD": "s3cret"})
    expected = endpoints(Layout(database, interpolate(env["GUICHET_REDIS_URL"])))
    assert read["action_endpoint"]["url"] == "http://nginx:5055/webhook"
    assert {k: v for k, v in read.items() if k != "action_endpoint"} == \
        {k: v for k, v in expected.items() if k != "action_endpoint"}
    for store in ("tracker_store", "lock_store"):
        module, name = read[store]["type"].rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name)


def test_health_checks_use_each_process_health_endpoint(compose: dict, guichet_services: dict[str, dict]) -> None:
    """The URLs bot/cluster.py waits for before going on (docs/deployment.md, Health)."""
    health = {"bot.rasa_server": "/", "rasa_sdk": "/health", "bot.console": "/healthz"}
    source = (PROJECT_ROOT / "bot" / "cluster.py").read_text(encoding="utf-8")
    assert set(health.values()) <= set(re.findall(r'wait_http\(f"[^"]*?(/[\w-]*)"', source))
    for name, service in guichet_services.items():
        module = python_commands(service)[-1][2]
        if module not in health:
            continue
        test = " ".join(service["healthcheck"]["test"])
        port, path = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w-]*)", test).groups()
        assert path == health[module], name
        if module == "bot.console":
            assert int(port) == int(service["environment"]["GUICHET_CONSOLE_PORT"]), name
            assert service["ports"][0].endswith(f":{port}"), name
        else:
            assert int(port) == listening_port(service), name
    assert "/nginx-health" in " ".join(compose["services"]["nginx"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])


# -- nginx ------------------------------------------------------------------------------------
def test_nginx_upstreams_are_compose_services_on_their_ports(compose: dict, guichet_services: dict[str, dict]) -> None:
    upstreams = nginx_upstreams(NGINX_FILE.read_text(encoding="utf-8"))
    assert set(upstreams) == {"rasa", "rasa_sticky", "actions"}
    replicas = services_running(guichet_services, "bot.rasa_server")
    action_servers = services_running(guichet_services, "rasa_sdk")
    assert len(replicas) >= 2 and len(action_servers) >= 2
    assert upstreams["rasa"] == upstreams["rasa_sticky"]
    assert sorted(upstreams["rasa"]) == sorted((name, listening_port(s)) for name, s in replicas.items())
    assert sorted(upstreams["actions"]) == sorted((name, listening_port(s)) for name, s in action_servers.items())
    # The console publishes a model to every replica.
    env = next(iter(guichet_services.values()))["environment"]
    assert sorted(env["GUICHET_RASA_REPLICAS"].split(",")) == sorted(
        f"http://{name}:{listening_port(s)}" for name, s in replicas.items())
    # nginx listens where the compose file and Rasa's endpoints expect it.
    listens = {int(port) for port in re.findall(r"^\s*listen\s+(\d+);", NGINX_FILE.read_text(), re.MULTILINE)}
    public_target = int(compose["services"]["nginx"]["ports"][0].rsplit(":", 1)[1])
    action_url = yaml.safe_load(interpolate(compose["configs"]["rasa-endpoints"]["content"]))["action_endpoint"]["url"]
    assert listens == {public_target, int(re.search(r":(\d+)/", action_url).group(1))}
    assert env["GUICHET_RASA_URL"] == f"http://nginx:{public_target}"


def test_nginx_rules_are_the_ones_bot_cluster_generates() -> None:
    """Same directives, in the same order, but for the addresses and the file paths."""
    per_machine = ("server ", "listen ", "user ", "pid ", "error_log ", "client_body_temp_path ",
                   "proxy_temp_path ", "fastcgi_temp_path ", "uwsgi_temp_path ", "scgi_temp_path ")

    def rules(text: str) -> list[str]:
        lines = (line.strip() for line in text.splitlines())
        return [line for line in lines if line and not line.startswith(("#", *per_machine))]

    generated = nginx_config(Layout("postgresql://db/guichet", "redis://r/1", replica_ports=[1, 2], action_ports=[3, 4]))
    assert rules(NGINX_FILE.read_text(encoding="utf-8")) == rules(generated)


def test_nginx_drops_idle_upstream_connections_before_the_servers_do() -> None:
    """A request nginx sends on a kept connection the server is closing is reset, and nginx
    does not retry a POST: the citizen would get a 502's safety net. So each upstream's idle
    connections must end on nginx's side first (shorter than the server's keep-alive)."""
    from rasa.core.constants import DEFAULT_KEEP_ALIVE_TIMEOUT
    from rasa_sdk.endpoint import create_app

    server_keep_alive = {"actions": create_app("actions").config.KEEP_ALIVE_TIMEOUT,  # Sanic's 5 s
                         "rasa": DEFAULT_KEEP_ALIVE_TIMEOUT}  # `rasa run`: 120 s
    text = NGINX_FILE.read_text(encoding="utf-8")
    for upstream, server_seconds in server_keep_alive.items():
        block = re.search(rf"upstream {upstream} {{(.*?)}}", text, re.S).group(1)
        assert "keepalive " in block  # connections are kept…
        found = re.search(r"keepalive_timeout (\d+)s;", block)
        nginx_seconds = int(found.group(1)) if found else 60  # nginx's default
        assert nginx_seconds < server_seconds, (upstream, nginx_seconds, server_seconds)


@pytest.mark.skipif(not find_nginx(), reason="nginx is not installed (make nginx)")
def test_nginx_accepts_the_configuration(compose: dict, tmp_path: Path) -> None:
    text = NGINX_FILE.read_text(encoding="utf-8")
    for name in compose["services"]:  # Docker's DNS names are not resolvable here
        text = re.sub(rf"\bserver {re.escape(name)}:", "server 127.0.0.1:", text)
    config = tmp_path / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    result = subprocess.run([find_nginx(), "-t", "-e", "stderr", "-c", str(config), "-p", str(tmp_path),
                             "-g", f"pid {tmp_path}/nginx.pid;"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# -- Variables and secrets --------------------------------------------------------------------
def test_every_variable_passed_to_a_container_is_read(compose: dict, guichet_services: dict[str, dict]) -> None:
    project = "\n".join(p.read_text(encoding="utf-8") for folder in ("bot", "actions", "rasa_sdk_plugins")
                        for p in (PROJECT_ROOT / folder).rglob("*.py"))
    rasa = "\n".join(p.read_text(encoding="utf-8", errors="replace") for package in ("rasa", "rasa_sdk")
                     for folder in importlib.util.find_spec(package).submodule_search_locations
                     for p in Path(folder).rglob("*.py"))
    in_endpoints = set(re.findall(r"\$\$\{(\w+)\}", compose["configs"]["rasa-endpoints"]["content"]))
    for name, service in guichet_services.items():
        for variable in service["environment"]:
            quoted = f'"{variable}"'
            assert quoted in project or quoted in rasa or variable in in_endpoints, \
                f"{name}: {variable} is read by nothing"
    # The official images' own variables.
    assert set(compose["services"]["postgres"]["environment"]) <= {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"}


def test_no_secret_is_written_in_the_compose_file(compose: dict) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name, service in compose["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable):
                match = VARIABLE.fullmatch(str(value))
                assert match, f"{name}: {variable} is written in the file"
                assert match.group(2) in (None, ":?", "?"), f"{name}: {variable} has a default value"
    # Credentials in URLs come from variables; nothing looks like a generated key.
    for user, password in re.findall(r"://([^:/@\s]+):(.+?)@", text):
        assert VARIABLE.fullmatch(password), f"password of {user} is written"
    assert not re.findall(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{24,}\b", text)
    # Mandatory secrets stop Compose when they are missing.
    for secret in ("POSTGRES_PASSWORD", "GUICHET_RASA_TOKEN"):
        assert f"${{{secret}:?" in text, secret


# -- Dockerfile -------------------------------------------------------------------------------
def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (last match wins)."""
    ignored = False
    for line in (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = Path(path).parts
        if any(fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_dockerfile_copies_files_that_exist_and_reach_the_build() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    copies = [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("COPY ")]
    assert copies
    for args in copies:
        if any(arg.startswith("--from=") for arg in args):
            continue
        *sources, _target = [arg for arg in args if not arg.startswith("--")]
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), source
            assert not dockerignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    # No secret, local state or model in the context, nor baked into the image.
    for path in (".env", "models/x.tar.gz", "var/guichet.db", ".venv/bin/python", ".git/HEAD"):
        assert dockerignored(path), path
    assert not re.search(r"^(ENV|ARG)\s.*(TOKEN|SECRET|PASSWORD)", text, re.MULTILINE)
    assert re.search(r"^USER\s+(?!root)\w+", text, re.MULTILINE)
    assert "FROM python:3.10-slim-bookworm" in text
