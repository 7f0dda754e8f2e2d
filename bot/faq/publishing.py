"""Publishing the FAQ: train a new model, evaluate it, and swap it into the running Rasa
server(s) only if it understands citizens at least as well as the live one.

A publication is a job (table `guichet_model_publications`) run by a worker process
(`python -m bot.faq.publishing run <id>`), so that TensorFlow never loads in the console
and every console replica sees the same progress. The worker:

1. snapshots `data/` (edits made during the job wait for the next publication);
2. trains the model (`bot.faq.training.train`, named by the hash of what shapes it, so
   that `make run` finds it again), reporting Rasa's epoch progress;
3. evaluates it like `make eval` (bot.faq.evaluation): FAQ top-1 accuracy on the public
   set `eval/public/public.tsv` with the new model, and on the held-out split of the new
   data with a model trained on the rest;
4. compares with the live model: its scores recorded when it was published, or, for a
   model published outside the console, measured now on the public set; a drop below
   them (minus `tolerance`) refuses the publication and the live model stays;
5. swaps the model into each Rasa server with `PUT /model` (Rasa's HTTP API, token
   GUICHET_RASA_TOKEN) and checks `GET /status`. Rasa loads the new model, then replaces
   the old one between two messages: requests wait while it loads, none fails.

A rollback is the same job without training: it swaps back a model published before.
`models/live.json` names the live model, for `make run` after a restart.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.db import session_scope, utcnow
from bot.db.faq_models import ModelPublication
from bot.faq import audit
from bot.faq.editing import FaqError
from bot.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)

LIVE_POINTER = "live.json"
EPOCH_COMPONENTS = {"DIETClassifier", "ResponseSelector", "TEDPolicy", "UnexpecTEDIntentPolicy"}
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = dt.timedelta(seconds=90)
SWAP_TIMEOUT = 900.0
PHASE_LABELS = {
    "queued": "En attente",
    "snapshot": "Préparation des données",
    "training": "Entraînement du nouveau modèle",
    "training_held_out": "Entraînement de contrôle (données mises de côté)",
    "evaluating": "Évaluation",
    "baseline": "Mesure du modèle en ligne",
    "swapping": "Mise en ligne",
    "done": "Terminé",
}
STATUS_LABELS = {"queued": "En attente", "running": "En cours", "published": "En ligne",
                 "refused": "Refusé", "failed": "Échec"}


@dataclass
class PublishOptions:
    """What a publication trains on and where it publishes (stored with the job)."""

    config: Path = PROJECT_ROOT / "config.yml"
    domain: Path = PROJECT_ROOT / "domain.yml"
    data_dir: Path = PROJECT_ROOT / "data"
    catalog_file: Path = PROJECT_ROOT / "bot" / "faq" / "catalog.yml"
    models_dir: Path = PROJECT_ROOT / "models"
    public_set: Path = PROJECT_ROOT / "eval" / "public" / "public.tsv"
    rasa_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:5005"])
    held_out: bool = True
    # Accepted drop of accuracy (0.0: any drop refuses).
    tolerance: float = 0.0
    min_confidence: float = 0.2

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> PublishOptions:
        data = json.loads(text or "{}")
        paths = {"config", "domain", "data_dir", "catalog_file", "models_dir", "public_set"}
        return cls(**{k: Path(v) if k in paths else v for k, v in data.items()})

    @classmethod
    def from_settings(cls) -> PublishOptions:
        settings = get_settings()
        return cls(
            data_dir=settings.faq_dir.parent, catalog_file=settings.catalog_file,
            rasa_urls=list(settings.rasa_model_urls or (settings.rasa_url,)),
            tolerance=settings.publish_tolerance, min_confidence=settings.faq_min_confidence,
        )


@dataclass(frozen=True)
class Publication:
    id: int
    kind: str
    status: str
    actor: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    phase: str
    progress: float
    message: str
    model_file: str | None
    scores: dict[str, Any] | None
    baseline_scores: dict[str, Any] | None
    live: bool
    train_seconds: float | None
    total_seconds: float | None
    rollback_of: int | None

    @property
    def running(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def phase_label(self) -> str:
        return PHASE_LABELS.get(self.phase, self.phase)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def model_name(self) -> str:
        return Path(self.model_file).name if self.model_file else ""

    def accuracy(self, split: str) -> float | None:
        block = (self.scores or {}).get(split) or {}
        return block.get("faq_top1")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "status_label": self.status_label,
            "actor": self.actor, "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "phase": self.phase, "phase_label": self.phase_label, "progress": round(self.progress, 3),
            "message": self.message, "model": self.model_name, "scores": self.scores,
            "baseline_scores": self.baseline_scores, "live": self.live,
            "train_seconds": self.train_seconds, "total_seconds": self.total_seconds,
        }


def _view(row: ModelPublication) -> Publication:
    def load(text: str | None) -> dict[str, Any] | None:
        return json.loads(text) if text else None

    return Publication(
        row.id, row.kind, row.status, row.actor, row.created_at, row.started_at, row.finished_at,
        row.phase, row.progress, row.message, row.model_file, load(row.scores), load(row.baseline_scores),
        bool(row.live), row.train_seconds, row.total_seconds, row.rollback_of,
    )


# The console's side ------------------------------------------------------------------------
class Publisher:
    """Starts publication jobs and reads their progress and history."""

    def __init__(self, database_url: str, rasa_token: str, options: PublishOptions | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.rasa_token = rasa_token
        self.options = options or PublishOptions()
        self.env = env

    @classmethod
    def from_settings(cls) -> Publisher:
        settings = get_settings()
        return cls(settings.database_url, settings.rasa_token, PublishOptions.from_settings())

    def start(self, actor: str, options: PublishOptions | None = None) -> Publication:
        """Queues a publication and starts its worker; refused while another job runs."""
        return self._start(ModelPublication(kind="publish", actor=actor,
                                            request=(options or self.options).to_json()))

    def rollback(self, publication_id: int, actor: str) -> Publication:
        """Puts back the model of an earlier publication (one click in the history)."""
        target = self.get(publication_id)
        if target is None or target.status != "published" or not target.model_file:
            raise FaqError("Ce modèle n'a jamais été en ligne : impossible d'y revenir.")
        if not Path(target.model_file).exists():
            raise FaqError(f"Le fichier du modèle {target.model_name} n'existe plus : impossible d'y revenir.")
        if target.live:
            raise FaqError("Ce modèle est déjà en ligne.")
        return self._start(ModelPublication(
            kind="rollback", actor=actor, request=self.options.to_json(), model_file=target.model_file,
            rollback_of=target.id, scores=json.dumps(target.scores) if target.scores else None,
            fingerprint=None,
        ))

    def _start(self, row: ModelPublication) -> Publication:
        self.expire_stale()
        row.status, row.running_slot, row.phase = "queued", 1, "queued"
        try:
            with session_scope(self.database_url) as session:
                session.add(row)
                session.flush()
                publication_id = row.id
        except IntegrityError as exc:
            running = self.running()
            who = f" (lancée par {running.actor})" if running else ""
            raise FaqError(f"Une publication est déjà en cours{who} : attendez qu'elle se termine.") from exc
        self._launch(publication_id)
        return self.get(publication_id)  # type: ignore[return-value]

    def _launch(self, publication_id: int) -> None:
        options = PublishOptions.from_json(self.get_row_request(publication_id))
        options.models_dir.mkdir(parents=True, exist_ok=True)
        log = (options.models_dir / f"publication-{publication_id}.log").open("ab")
        env = {**(self.env or os.environ), "GUICHET_DATABASE_URL": self.database_url,
               "GUICHET_RASA_TOKEN": self.rasa_token, "LOG_LEVEL": "INFO"}
        subprocess.Popen(
            [sys.executable, "-m", "bot.faq.publishing", "run", str(publication_id)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def get_row_request(self, publication_id: int) -> str:
        with session_scope(self.database_url) as session:
            return session.get(ModelPublication, publication_id).request

    def get(self, publication_id: int) -> Publication | None:
        with session_scope(self.database_url) as session:
            row = session.get(ModelPublication, publication_id)
            return _view(row) if row else None

    def running(self) -> Publication | None:
        with session_scope(self.database_url) as session:
            row = session.execute(select(ModelPublication).where(ModelPublication.running_slot == 1)).scalar()
            return _view(row) if row else None

    def live(self) -> Publication | None:
        with session_scope(self.database_url) as session:
            row = session.execute(select(ModelPublication).where(ModelPublication.live.is_(True))
                                  .order_by(ModelPublication.id.desc())).scalar()
            return _view(row) if row else None

    def history(self, limit: int = 50) -> list[Publication]:
        """Every publication and rollback, latest first, with their scores."""
        self.expire_stale()
        with session_scope(self.database_url) as session:
            rows = session.execute(select(ModelPublication).order_by(ModelPublication.id.desc()).limit(limit))
            views = [_view(row) for row in rows.scalars()]
        # Running jobs first, then by end time (a baseline is recorded during a job that ends after it).
        return sorted(views, key=lambda p: (p.finished_at is None, p.finished_at or p.created_at, p.id), reverse=True)

    def expire_stale(self) -> None:
        """A job whose worker stopped sending heartbeats (killed, machine restarted) failed."""
        limit = utcnow() - STALE_AFTER
        with session_scope(self.database_url) as session:
            for row in session.execute(select(ModelPublication).where(ModelPublication.running_slot == 1)).scalars():
                last = row.heartbeat_at or row.created_at
                if last < limit:
                    row.status, row.running_slot, row.finished_at = "failed", None, utcnow()
                    row.message = "La publication a été interrompue (processus arrêté). Relancez-la."

    def wait(self, publication_id: int, timeout: float = 1800, poll: float = 1.0) -> Publication:
        deadline = time.monotonic() + timeout
        while True:
            publication = self.get(publication_id)
            if publication is None or not publication.running or time.monotonic() > deadline:
                return publication  # type: ignore[return-value]
            time.sleep(poll)


# Swapping ----------------------------------------------------------------------------------
class SwapError(FaqError):
    pass


def live_model_name(url: str, token: str, timeout: float = 30) -> str | None:
    """The file name of the model a Rasa server runs (`GET /status`)."""
    response = requests.get(f"{url}/status", params={"token": token}, timeout=timeout)
    if response.status_code == 409:  # no model loaded
        return None
    response.raise_for_status()
    return response.json().get("model_file")


def swap_model(urls: list[str], token: str, model_file: Path, timeout: float = SWAP_TIMEOUT) -> None:
    """Loads `model_file` into each Rasa server in turn (`PUT /model`), checks it runs it.
    Requests keep being answered: Rasa swaps the agent once the new one is loaded."""
    for url in urls:
        try:
            response = requests.put(f"{url}/model", params={"token": token},
                                    json={"model_file": str(model_file)}, timeout=timeout)
        except requests.RequestException as exc:
            raise SwapError(f"Le serveur Rasa {url} est injoignable : {exc}") from exc
        if response.status_code != 204:
            raise SwapError(f"Le serveur Rasa {url} a refusé le modèle ({response.status_code}) : "
                            f"{response.text[:300]}")
        running = live_model_name(url, token)
        if running != model_file.name:
            raise SwapError(f"Le serveur Rasa {url} exécute {running} au lieu de {model_file.name}.")
        logger.info("Rasa %s now runs %s", url, model_file.name)


def write_live_pointer(models_dir: Path, model_file: Path, publication_id: int) -> None:
    from bot.faq.yaml_rt import atomic_write

    atomic_write(models_dir / LIVE_POINTER, json.dumps({
        "model_file": str(model_file), "publication": publication_id, "at": utcnow().isoformat(),
    }, indent=2) + "\n")


def live_model(models_dir: Path = PROJECT_ROOT / "models") -> Path | None:
    """The model last published from the console, if its file is still there."""
    try:
        data = json.loads((models_dir / LIVE_POINTER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = Path(str(data.get("model_file") or ""))
    return path if path.is_file() else None


# The worker's side -------------------------------------------------------------------------
class Job:
    """The running publication's row: progress (throttled), heartbeat, outcome."""

    def __init__(self, url: str, publication_id: int) -> None:
        self.url = url
        self.id = publication_id
        self._last_write = 0.0
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)

    def __enter__(self) -> Job:
        self._write(status="running", started_at=utcnow(), heartbeat_at=utcnow())
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write(heartbeat_at=utcnow())
            except Exception:  # noqa: BLE001 - a missed heartbeat is retried at the next beat
                logger.exception("Heartbeat of publication %s failed", self.id)

    def _write(self, **values: Any) -> None:
        with session_scope(self.url) as session:
            session.execute(update(ModelPublication).where(ModelPublication.id == self.id).values(**values))

    def progress(self, phase: str, fraction: float, message: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_write >= 1.0:
            self._last_write = now
            self._write(phase=phase, progress=max(0.0, min(1.0, fraction)), message=message[:500])

    def finish(self, status: str, message: str, progress: float = 1.0, **values: Any) -> None:
        self._write(status=status, message=message, running_slot=None, finished_at=utcnow(),
                    progress=progress, phase="done", **values)

    def row(self) -> ModelPublication:
        with session_scope(self.url) as session:
            return session.get(ModelPublication, self.id)


class TrainingProgress:
    """Turns Rasa's output into a fraction: epochs of each component that has epochs."""

    EPOCHS = re.compile(r"Epochs:\s*(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")

    def __init__(self, config: Path, nlu_only: bool, report: Callable[[float, str], None]) -> None:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        names = [c.get("name") for c in data.get("pipeline") or []]
        if not nlu_only:
            names += [p.get("name") for p in data.get("policies") or []]
        self.components = max(1, sum(1 for n in names if n in EPOCH_COMPONENTS))
        self.report = report
        self.done = 0  # components whose epochs are all done
        self.complete = False  # the last progress bar seen reached its end
        self.tail: deque[str] = deque(maxlen=40)

    def __call__(self, line: str) -> None:
        self.tail.append(line)
        match = self.EPOCHS.search(line)
        if not match:
            if "Starting to train component" in line or "Training NLU model" in line:
                self.report(min(self.done, self.components) / self.components, "Préparation des exemples")
            return
        epoch, total = int(match.group(2)), max(int(match.group(3)), 1)
        if self.complete and epoch < total:
            self.complete = False  # the next component's bar
        if epoch >= total and not self.complete:
            self.complete = True
            self.done += 1
        part = self.done if self.complete else self.done + epoch / total
        step = min(self.done + (0 if self.complete else 1), self.components)
        self.report(min(part, self.components) / self.components,
                    f"Étape {max(step, 1)}/{self.components}, passe {epoch}/{total}")


def _scores(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "faq_top1": block["faq_top1"]["rate"],
        "faq_correct": block["faq_top1"]["correct"],
        "faq_total": block["faq_top1"]["total"],
        "out_of_scope_rejection": block["out_of_scope_rejection"]["rate"],
        "human_handoff": block["human_handoff"]["rate"],
        "errors_per_topic": block["errors_per_topic"],
    }


def _evaluate(model: Path, cases: list[Any], topics: set[str], min_confidence: float) -> dict[str, Any]:
    from rasa.core.agent import Agent

    from bot.faq.evaluation import predict, score

    agent = Agent.load(str(model))
    try:
        return _scores(score(asyncio.run(predict(agent, cases, min_confidence)), topics))
    finally:
        del agent
        gc.collect()


def _catalog_topics(catalog_file: Path) -> set[str]:
    data = yaml.safe_load(catalog_file.read_text(encoding="utf-8")) or {}
    return {str(entry["id"]) for entries in data.values() for entry in entries or []}


def _find_model(name: str, options: PublishOptions) -> Path | None:
    from bot.faq.training import cache_dir

    for folder in (options.models_dir, PROJECT_ROOT / "models", cache_dir()):
        if folder and (folder / name).is_file():
            return folder / name
    return None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %".replace(".", ",")


def compare(candidate: dict[str, Any], baseline: dict[str, Any], tolerance: float) -> list[str]:
    """The reasons to refuse the candidate (empty: it is at least as good). It must answer
    as many questions right and turn away as many out-of-scope questions as the live
    model: a model that answers more often but also answers what it should not is worse."""
    reasons = []
    for metric, what in (("faq_top1", "la bonne réponse passerait"),
                         ("out_of_scope_rejection", "les questions hors sujet écartées passeraient")):
        for split, label in (("public", "le jeu d'évaluation public"), ("held_out", "les questions mises de côté")):
            new = (candidate.get(split) or {}).get(metric)
            old = (baseline.get(split) or {}).get(metric)
            if new is not None and old is not None and new < old - tolerance - 1e-9:
                reasons.append(f"sur {label}, {what} de {_percent(old)} à {_percent(new)}")
    return reasons


def run_publication(url: str, publication_id: int, token: str) -> Publication:
    """The worker: runs a queued publication or rollback to its end."""
    with session_scope(url) as session:
        row = session.get(ModelPublication, publication_id)
        if row is None or row.status != "queued":
            raise FaqError(f"Publication {publication_id} is not waiting to run")
        kind, actor, options = row.kind, row.actor, PublishOptions.from_json(row.request)
    started = time.monotonic()
    with Job(url, publication_id) as job:
        try:
            if kind == "rollback":
                _rollback(job, options, token, actor)
            else:
                _publish(job, options, token, actor, started)
        except Exception as exc:  # noqa: BLE001 - every failure ends the job with a message
            logger.exception("Publication %s failed", publication_id)
            message = str(exc) if isinstance(exc, FaqError) else f"Erreur inattendue : {exc}"
            job.finish("failed", message[:2000], total_seconds=round(time.monotonic() - started, 1))
    with session_scope(url) as session:
        return _view(session.get(ModelPublication, publication_id))


def _publish(job: Job, options: PublishOptions, token: str, actor: str, started: float) -> None:
    from bot.faq.evaluation import load_public_set, split_training_data
    from bot.faq.training import MODEL_PREFIX, fingerprint, train

    held_share = 0.35 if options.held_out else 0.0
    train_span = (0.03, 0.75 - held_share)
    with tempfile.TemporaryDirectory(prefix="guichet-publish-") as tmp:
        work = Path(tmp)
        job.progress("snapshot", 0.01, "Copie des données", force=True)
        shutil.copytree(options.data_dir, work / "data", ignore=shutil.ignore_patterns(".*"))
        shutil.copy(options.config, work / "config.yml")
        shutil.copy(options.domain, work / "domain.yml")
        shutil.copy(options.catalog_file, work / "catalog.yml")
        config, domain, data = work / "config.yml", work / "domain.yml", work / "data"
        name = MODEL_PREFIX + fingerprint(config, domain, data)
        model = options.models_dir / f"{name}.tar.gz"
        job._write(fingerprint=name[len(MODEL_PREFIX):], model_file=str(model))
        if model.exists() and live_model_name(options.rasa_urls[0], token) == model.name:
            _mark_live(job.url, job.id, options, model)
            job.finish("published", "Rien de nouveau à publier : le modèle en ligne est déjà celui de ces données.",
                       total_seconds=round(time.monotonic() - started, 1), scores=_scores_of(job.url, model.name))
            return

        def reporter(phase: str, low: float, high: float) -> Callable[[float, str], None]:
            return lambda fraction, message: job.progress(phase, low + (high - low) * fraction, message)

        train_started = time.monotonic()
        trained_here = not model.exists()
        if not trained_here:
            job.progress("training", train_span[1], "Modèle déjà entraîné sur ces données", force=True)
        else:
            progress = TrainingProgress(config, False, reporter("training", *train_span))
            job.progress("training", train_span[0], "Démarrage", force=True)
            try:
                train(config, domain, data, options.models_dir, name, on_output=progress)
            except subprocess.CalledProcessError as exc:
                raise FaqError("L'entraînement a échoué : " + " | ".join(list(progress.tail)[-5:])) from exc
        topics = _catalog_topics(work / "catalog.yml")
        scores: dict[str, Any] = {}
        if options.held_out:
            span = (train_span[1], train_span[1] + held_share)
            held_out = split_training_data(data, work / "split")
            progress = TrainingProgress(config, True, reporter("training_held_out", *span))
            job.progress("training_held_out", span[0], "Démarrage", force=True)
            try:
                split_model = train(config, domain, work / "split", work / "models", "held-out", nlu_only=True,
                                    on_output=progress)
            except subprocess.CalledProcessError as exc:
                raise FaqError("L'entraînement de contrôle a échoué : " + " | ".join(list(progress.tail)[-5:])) from exc
            train_seconds = time.monotonic() - train_started
            job.progress("evaluating", 0.78, "Questions mises de côté", force=True)
            scores["held_out"] = _evaluate(split_model, held_out, topics, options.min_confidence)
        else:
            train_seconds = time.monotonic() - train_started
        job.progress("evaluating", 0.83, "Jeu d'évaluation public", force=True)
        public = load_public_set(options.public_set)
        scores["public"] = _evaluate(model, public, topics, options.min_confidence)
        job._write(scores=json.dumps(scores), train_seconds=round(train_seconds, 1))

        job.progress("baseline", 0.88, "Modèle en ligne", force=True)
        baseline_row, baseline = _baseline(job, options, token, actor, public, topics)
        job._write(baseline_scores=json.dumps(baseline) if baseline else None)
        reasons = compare(scores, baseline or {}, options.tolerance)
        if reasons:
            job.finish("refused", "Publication refusée : " + " ; ".join(reasons)
                       + ". Le modèle en ligne reste en place.",
                       progress=0.9, total_seconds=round(time.monotonic() - started, 1))
            _audit(job.url, actor, f"Publication refusée (modèle {model.name}) : " + " ; ".join(reasons))
            if trained_here:
                _forget(job.url, model)
            return

        job.progress("swapping", 0.92, "Chargement dans le serveur Rasa", force=True)
        live_name = baseline_row.model_file if baseline_row else None
        _swap_all(options, token, model, Path(live_name) if live_name else None)
        _mark_live(job.url, job.id, options, model)
        total = round(time.monotonic() - started, 1)
        message = (f"Nouveau modèle en ligne. Bonne réponse : {_percent(scores['public']['faq_top1'])} "
                   "sur le jeu public" + (f", {_percent(scores['held_out']['faq_top1'])} sur les questions "
                                          "mises de côté" if "held_out" in scores else "") + ".")
        job.finish("published", message, total_seconds=total)
        _audit(job.url, actor, f"Modèle {model.name} publié ({message})", action="publish")


def _baseline(
    job: Job, options: PublishOptions, token: str, actor: str, public: list[Any], topics: set[str],
) -> tuple[ModelPublication | None, dict[str, Any] | None]:
    """The live model's publication and scores; measured now if it has none."""
    name = live_model_name(options.rasa_urls[0], token)
    if name is None:
        return None, None
    with session_scope(job.url) as session:
        rows = session.execute(
            select(ModelPublication).where(ModelPublication.status == "published", ModelPublication.scores.is_not(None))
            .order_by(ModelPublication.id.desc())
        ).scalars()
        for row in rows:
            if row.model_file and Path(row.model_file).name == name:
                return row, json.loads(row.scores)
    path = _find_model(name, options)
    if path is None:
        raise FaqError(f"Le modèle en ligne {name} est introuvable dans {options.models_dir} : "
                       "impossible de le comparer au nouveau.")
    scores = {"public": _evaluate(path, public, topics, options.min_confidence)}
    with session_scope(job.url) as session:
        row = ModelPublication(
            kind="baseline", status="published", actor=actor, request=options.to_json(), phase="done",
            progress=1.0, message="Modèle en ligne avant la première publication depuis la console, mesuré pour comparaison.",
            model_file=str(path), scores=json.dumps(scores), live=True, started_at=utcnow(), finished_at=utcnow(),
        )
        session.add(row)
        session.flush()
        session.expunge(row)
    return row, scores


def _scores_of(url: str, model_name: str) -> str | None:
    """The scores recorded for a model file by an earlier publication (JSON), if any."""
    with session_scope(url) as session:
        for row in session.execute(select(ModelPublication).where(ModelPublication.scores.is_not(None))
                                   .order_by(ModelPublication.id.desc())).scalars():
            if row.model_file and Path(row.model_file).name == model_name:
                return row.scores
    return None


def _forget(url: str, model: Path) -> None:
    """Deletes a refused model's file (a model weighs ~100 MB) unless it was ever live."""
    if _scores_of_published(url, model.name) or not model.exists():
        return
    model.unlink()
    logger.info("Deleted the refused model %s", model)


def _scores_of_published(url: str, model_name: str) -> bool:
    with session_scope(url) as session:
        rows = session.execute(select(ModelPublication.model_file).where(ModelPublication.status == "published"))
        return any(Path(f).name == model_name for (f,) in rows if f)


def _swap_all(options: PublishOptions, token: str, model: Path, previous: Path | None) -> None:
    done: list[str] = []
    try:
        for url in options.rasa_urls:
            swap_model([url], token, model)
            done.append(url)
    except SwapError:
        if previous is not None and previous.exists() and done:
            try:
                swap_model(done, token, previous)
            except SwapError:
                logger.exception("Could not put %s back on %s", previous, done)
        raise


def _mark_live(url: str, publication_id: int, options: PublishOptions, model: Path) -> None:
    with session_scope(url) as session:
        session.execute(update(ModelPublication).where(ModelPublication.live.is_(True)).values(live=False))
        session.execute(update(ModelPublication).where(ModelPublication.id == publication_id).values(live=True))
    write_live_pointer(options.models_dir, model, publication_id)


def _audit(url: str, actor: str, summary: str, action: str = "publish") -> None:
    with session_scope(url) as session:
        audit.record(session, actor, action, summary)


def _rollback(job: Job, options: PublishOptions, token: str, actor: str) -> None:
    started = time.monotonic()
    row = job.row()
    model = Path(row.model_file or "")
    if not model.is_file():
        raise FaqError(f"Le fichier du modèle {model.name} n'existe plus.")
    job.progress("swapping", 0.1, "Chargement dans le serveur Rasa", force=True)
    previous = _find_model(live_model_name(options.rasa_urls[0], token) or "", options)
    _swap_all(options, token, model, previous)
    _mark_live(job.url, job.id, options, model)
    message = f"Retour au modèle de la publication n° {row.rollback_of} ({model.name})."
    job.finish("published", message, total_seconds=round(time.monotonic() - started, 1))
    _audit(job.url, actor, message, action="rollback")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a queued publication (started by the console)")
    run.add_argument("publication_id", type=int)
    sub.add_parser("publish", help="publish the current FAQ now and wait (as user `cli`)")
    args = parser.parse_args()
    settings = get_settings()
    if args.command == "run":
        result = run_publication(settings.database_url, args.publication_id, settings.rasa_token)
    else:
        publisher = Publisher.from_settings()
        result = publisher.wait(publisher.start("cli").id)
    print(f"{result.status}: {result.message}")
    sys.exit(0 if result.status in ("published", "refused") else 1)


if __name__ == "__main__":
    main()
