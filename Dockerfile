# syntax=docker/dockerfile:1
# Guichet's image: one image for every role of the production layout (Rasa replica,
# action server, agents' console, broadcast worker, migrations, training); each service
# of docker-compose.yml (or each Kubernetes Deployment / Job) gives the command.
# Nothing secret and no trained model inside: secrets come from the environment at run
# time, models live in the `models` volume (trained there by the one-shot `train`
# service, or published there from the console). docs/deployment.md, section
# "Containers: docker-compose and Kubernetes".
#
#   docker build -t guichet .

FROM python:3.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers only here, in case a pinned package has to be built from its source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock /tmp/requirements.lock
# requirements.lock pins every version but carries no hashes, so `--require-hashes` cannot
# be used. The development tools it also pins (tests, browser driver, linter) stay out.
RUN grep -viE '^(pytest|pytest-asyncio|pytest-timeout|hypothesis|playwright|ruff)==' \
      /tmp/requirements.lock > /tmp/runtime.lock \
 && pip install "pip<25" wheel \
 && pip install -r /tmp/runtime.lock


FROM python:3.10-slim-bookworm
# The project runs from /app (bot/settings.py: PROJECT_ROOT is the folder holding bot/).
# Rasa's telemetry is off: the assistant of a town hall sends nothing it does not need to.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RASA_TELEMETRY_ENABLED=false
RUN groupadd --system --gid 10001 guichet \
 && useradd --system --uid 10001 --gid guichet --create-home --home-dir /home/guichet guichet
COPY --from=build /opt/venv /opt/venv
WORKDIR /app

# The code and the assistant's configuration: owned by root, read-only for the processes.
COPY bot/ bot/
COPY actions/ actions/
COPY rasa_sdk_plugins/ rasa_sdk_plugins/
COPY config.yml domain.yml credentials.yml endpoints.yml commune.yml ./
# The public evaluation set: a publication from the console is checked against it.
COPY eval/public/ eval/public/
# What the console edits (the FAQ, the catalog) and what the processes write (models,
# Rasa's training cache .rasa/): owned by the app's user. docker-compose.yml mounts
# volumes on data/, catalog/ and models/; a new volume starts with the image's files.
COPY --chown=guichet:guichet data/ data/
RUN mkdir -p catalog models var .rasa \
 && cp bot/faq/catalog.yml catalog/catalog.yml \
 && chown -R guichet:guichet data catalog models var .rasa

USER guichet
# No HEALTHCHECK here: the image runs processes with different health endpoints (Rasa
# GET /, action server GET /health, console GET /healthz) and some with none (the
# broadcast worker, the one-shot jobs); docker-compose.yml declares each service's check.
# No default command either: every service names its own.
