# Guichet: `make run` sets everything up and starts the assistant; `make test` runs the tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# Python 3.10 is required by Rasa 3.6: the first working one of PATH, pyenv or /usr.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10.*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
  if $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then command -v $$p; break; fi; done)

.PHONY: help install browser nginx train run run-cluster shell test eval bench lint clean run-sim say

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@if [ -z "$(PYTHON310)" ]; then \
	  echo "Python 3.10 is required (Rasa 3.6 supports no newer Python) and was not found."; \
	  echo "Install it (e.g. 'pyenv install 3.10' or your distribution's python3.10) or run: make PYTHON310=/path/to/python3.10 ..."; \
	  exit 1; fi
	@$(PYTHON310) -c 'import sys; assert sys.version_info[:2] == (3, 10), sys.version' \
	  || { echo "$(PYTHON310) is not Python 3.10"; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip<25" wheel
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## Create the virtual environment and install the pinned dependencies

train: install ## Train the model if none matches the current data and config
	$(PY) -m bot.faq.training

run: install ## Set up and start the assistant (Rasa server, action server, agents' console), embedded default
	$(PY) -m bot.launcher

run-cluster: install nginx ## Start the production layout on this machine: PostgreSQL, Redis, nginx, 2 Rasa replicas, 2 action servers
	$(PY) -m bot.cluster

shell: install ## Chat with the assistant in the terminal
	$(PY) -m bot.launcher --shell

run-sim: install ## Start the assistant with Messenger/Instagram on a local Graph API simulator
	$(PY) -m bot.launcher --simulators

# make say MSG="horaires de la mairie ?" [CHANNEL=instagram] [FROM=<citizen id>]
say: ## Write to the assistant as a Messenger citizen (needs `make run-sim`), print its answer
	$(PY) -m tests.simulators.say --channel $(or $(CHANNEL),messenger) $(if $(FROM),--sender $(FROM)) "$(MSG)"

# Browser tests drive Debian's chromium (a browser download is impossible here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }

# The cluster's load balancer (make run-cluster and its tests): Debian's nginx.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  echo "Installing Debian's nginx for the cluster"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; fi; }

test: install browser nginx ## Run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

eval: install ## Evaluate the NLU (public set + held-out split) against Rasa's default config
	$(PY) -m bot.faq.evaluation

bench: install ## Run the benchmarks; results in bench/results/
	$(PY) -m bench.run

lint: install ## ruff
	$(VENV)/bin/ruff check .

clean: ## Remove the environment, models and local data
	rm -rf $(VENV) models var .pytest_cache
