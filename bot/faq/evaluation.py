"""`make eval`: how well the NLU understands citizens, against Rasa's default recipe.

Both configurations are trained, in the same run, on the same training split of the
project's data (`config.yml` versus Rasa's default pipeline), then measured on:
- the held-out split of the project's data (every fifth example of each intent, chosen by
  a stable hash of its text), and
- the public evaluation set `eval/public/public.tsv`, never trained on.

Reported: FAQ top-1 accuracy on in-scope questions, out-of-scope rejection, handoff
recognition, per-topic errors, confusion pairs, training time (Rasa's training cache
off, so that nothing is reused from an earlier run), and a sweep of the FAQ confidence
threshold on the held-out split. Then the model `make run` serves (all the data, NLU and
dialogue) is trained, timed and measured on the public set. Written to eval/results/report.{json,md}.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.faq.store import RETRIEVAL_INTENT, parse_examples
from bot.faq.understanding import understand
from bot.settings import PROJECT_ROOT, get_settings

logger = logging.getLogger(__name__)

PUBLIC_SET = PROJECT_ROOT / "eval" / "public" / "public.tsv"
RESULTS = PROJECT_ROOT / "eval" / "results"
HELD_OUT_EVERY = 5
NOT_ANSWERED = {"fallback", "out_of_scope"}
BASELINE_CONFIG = "recipe: default.v1\nlanguage: fr\npipeline:\npolicies:\n"


@dataclass(frozen=True)
class Case:
    text: str
    expected: frozenset[str]  # topic ids, or out_of_scope / human_handoff / another intent


def load_public_set(path: Path = PUBLIC_SET) -> list[Case]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [Case(row["text"], frozenset(row["expected"].split("|"))) for row in rows]


def is_held_out(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def split_training_data(data_dir: Path, out_dir: Path) -> list[Case]:
    """Writes the training split of `data_dir`'s NLU files to `out_dir`; returns the rest."""
    held_out: list[Case] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted(data_dir.rglob("*.yml"))):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not data.get("nlu"):
            continue
        kept = []
        for item in data["nlu"]:
            if "intent" not in item:
                kept.append(item)
                continue
            name = item["intent"]
            label = name.split("/", 1)[1] if name.startswith(RETRIEVAL_INTENT + "/") else name
            train = []
            for example in parse_examples(item.get("examples", "")):
                if is_held_out(example):
                    held_out.append(Case(example, frozenset({label})))
                else:
                    train.append(example)
            kept.append({"intent": name, "examples": "".join(f"- {e}\n" for e in train)})
        split = {"version": "3.1", "nlu": kept}
        if data.get("responses"):
            split["responses"] = data["responses"]
        (out_dir / f"{index:02d}-{path.name}").write_text(
            yaml.safe_dump(split, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return held_out


async def predict(agent: Any, cases: list[Case], min_confidence: float) -> list[dict[str, Any]]:
    """The label the assistant would act on for each case (topic, fallback or intent)."""
    predictions = []
    for case in cases:
        parse = await agent.parse_message(case.text)
        understood = understand(parse, min_confidence)
        predictions.append(
            {
                "text": case.text,
                "expected": sorted(case.expected),
                "predicted": understood.label,
                "confidence": round(understood.confidence, 3),
                "ranking": [[t, round(c, 3)] for t, c in understood.candidates],
                "_parse": parse,
            }
        )
    return predictions


def score(predictions: list[dict[str, Any]], topics: set[str]) -> dict[str, Any]:
    """FAQ top-1 accuracy, out-of-scope rejection, handoff recognition, errors."""
    in_scope = [p for p in predictions if set(p["expected"]) <= topics]
    oos = [p for p in predictions if p["expected"] == ["out_of_scope"]]
    handoff = [p for p in predictions if p["expected"] == ["human_handoff"]]
    other = [p for p in predictions if p not in in_scope and p not in oos and p not in handoff]

    def hits(items: list[dict[str, Any]], ok: Any) -> dict[str, Any]:
        good = sum(1 for p in items if ok(p))
        return {"correct": good, "total": len(items), "rate": round(good / len(items), 4) if items else None}

    errors = [p for p in in_scope if p["predicted"] not in p["expected"]]
    confusion = Counter(f"{'|'.join(p['expected'])} -> {p['predicted']}" for p in errors)
    per_topic = Counter("|".join(p["expected"]) for p in errors)
    return {
        "faq_top1": hits(in_scope, lambda p: p["predicted"] in p["expected"]),
        # Not answered, but the right topic is among the "Vouliez-vous dire…" suggestions.
        "suggested_when_unsure": hits(
            [p for p in in_scope if p["predicted"] == "fallback"],
            lambda p: any(t in p["expected"] for t, _ in p["ranking"]),
        ),
        "out_of_scope_rejection": hits(oos, lambda p: p["predicted"] in NOT_ANSWERED),
        "human_handoff": hits(handoff, lambda p: p["predicted"] == "human_handoff"),
        "other_intents": hits(other, lambda p: p["predicted"] in p["expected"]),
        "errors_per_topic": dict(per_topic.most_common()),
        "confusion_pairs": dict(confusion.most_common(20)),
        "misses": [
            {k: p[k] for k in ("text", "expected", "predicted", "confidence", "ranking")}
            for p in predictions
            if (p in oos and p["predicted"] not in NOT_ANSWERED)
            or (p not in oos and p["predicted"] not in p["expected"])
        ],
    }


def rescore(predictions: list[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    return [{**p, "predicted": understand(p["_parse"], min_confidence).label} for p in predictions]


def catalog_topics() -> set[str]:
    from bot.faq.store import get_store

    return set(get_store().catalog.topics)


async def evaluate_model(model: Path, held_out: list[Case], public: list[Case], min_conf: float) -> dict[str, Any]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    topics = catalog_topics()
    held = await predict(agent, held_out, min_conf)
    pub = await predict(agent, public, min_conf)
    sweep = {}
    for threshold in (0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6):
        h, p = score(rescore(held, threshold), topics), score(rescore(pub, threshold), topics)
        sweep[str(threshold)] = {
            "held_out_faq_top1": h["faq_top1"]["rate"],
            "held_out_oos_rejection": h["out_of_scope_rejection"]["rate"],
            "public_faq_top1": p["faq_top1"]["rate"],
            "public_oos_rejection": p["out_of_scope_rejection"]["rate"],
        }
    return {
        "min_topic_confidence": min_conf,
        "held_out": score(held, topics),
        "public": score(pub, topics),
        "threshold_sweep": sweep,
    }


def markdown(report: dict[str, Any]) -> str:
    def rate(block: dict[str, Any]) -> str:
        if not block["total"]:
            return "n/a"
        return f"{100 * block['rate']:.1f}% ({block['correct']}/{block['total']})"

    lines = [
        "# NLU evaluation",
        "",
        f"Generated by `make eval` on {report['date']}. Training split: {report['train_examples']} "
        f"examples; held-out split: {report['held_out_examples']}; public set: {report['public_examples']} "
        "(never trained on).",
        "",
    ]
    ours = report["guichet"]
    base = report.get("baseline")  # absent with --skip-baseline: Guichet's column only
    lines += ["| metric | Guichet (config.yml) | Rasa default recipe |", "|---|---|---|"] if base else [
        "| metric | Guichet (config.yml) |", "|---|---|"]

    def row(name: str, mine: str, theirs: str) -> str:
        return f"| {name} | {mine} | {theirs} |" if base else f"| {name} | {mine} |"

    for split in ("public", "held_out"):
        for key, name in (
            ("faq_top1", "FAQ top-1 accuracy (in scope)"),
            ("suggested_when_unsure", "unsure: right topic among the suggestions"),
            ("out_of_scope_rejection", "out-of-scope rejection"),
            ("human_handoff", "human_handoff recognised"),
            ("other_intents", "other intents"),
        ):
            lines.append(row(f"{split}: {name}", rate(ours[split][key]), rate(base[split][key]) if base else ""))
    lines.append(row("training time (NLU, 2 cores)", f"{ours['train_seconds']:.0f} s",
                     f"{base['train_seconds']:.0f} s" if base else ""))
    if full := report.get("guichet_full"):
        lines += [
            "",
            "## The model `make run` serves (all the data, NLU and dialogue)",
            "",
            f"Full training: {full['train_seconds']:.0f} s on this machine. On the public set, FAQ-topic "
            f"threshold {full['min_topic_confidence']}:",
            "",
            "| metric | Guichet, full model |",
            "|---|---|",
        ]
        for key, name in (("faq_top1", "FAQ top-1 accuracy (in scope)"),
                          ("out_of_scope_rejection", "out-of-scope rejection"),
                          ("human_handoff", "human_handoff recognised")):
            lines.append(f"| public: {name} | {rate(full['public'][key])} |")
        if sweep := full.get("threshold_sweep"):
            lines += ["", "FAQ-topic threshold on the public set (top-1 / out-of-scope rejection): " + " · ".join(
                f"{t}: {100 * r['public_faq_top1']:.1f}% / {100 * r['public_oos_rejection']:.1f}%"
                for t, r in sweep.items())]
    lines += ["", "## FAQ confidence threshold (Guichet)", "", "| threshold | held-out top-1 | held-out OOS rejection | public top-1 | public OOS rejection |", "|---|---|---|---|---|"]
    for threshold, row in ours["threshold_sweep"].items():
        cells = [f"{100 * v:.1f}%" if v is not None else "n/a" for v in row.values()]
        lines.append(f"| {threshold} | " + " | ".join(cells) + " |")
    for split in ("public", "held_out"):
        lines += ["", f"## Guichet errors ({split})", "", "| text | expected | predicted | confidence |", "|---|---|---|---|"]
        for miss in ours[split]["misses"]:
            text = miss["text"].replace("|", "/")
            lines.append(f"| {text} | {'/'.join(miss['expected'])} | {miss['predicted']} | {miss['confidence']} |")
        lines += ["", "Confusion pairs: " + (", ".join(f"{k} ({v})" for k, v in ours[split]["confusion_pairs"].items()) or "none")]
    return "\n".join(lines) + "\n"


def run(output: Path = RESULTS, config: Path = PROJECT_ROOT / "config.yml", baseline: bool = True,
        full: bool = True) -> dict[str, Any]:
    from bot.faq.training import train

    settings = get_settings()
    public = load_public_set()
    with tempfile.TemporaryDirectory(prefix="guichet-eval-") as tmp:
        work = Path(tmp)
        held_out = split_training_data(PROJECT_ROOT / "data", work / "train")
        train_count = sum(
            len(parse_examples(item.get("examples", "")))
            for f in (work / "train").glob("*.yml")
            for item in yaml.safe_load(f.read_text())["nlu"]
        )
        (work / "baseline.yml").write_text(BASELINE_CONFIG, encoding="utf-8")
        shutil.copy(config, work / "guichet.yml")
        report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "train_examples": train_count,
            "held_out_examples": len(held_out),
            "public_examples": len(public),
        }
        runs = [("guichet", work / "guichet.yml", settings.faq_min_confidence)]
        if baseline:
            runs.append(("baseline", work / "baseline.yml", 0.0))

        def timed_training(run_config: Path, data: Path, name: str, nlu_only: bool) -> tuple[Path, float]:
            # Rasa's training cache off: nothing reused from an earlier run, honest times.
            started = time.monotonic()
            model = train(run_config, PROJECT_ROOT / "domain.yml", data, work / "models", name, nlu_only=nlu_only,
                          reuse_cache=False)
            return model, time.monotonic() - started

        for name, run_config, min_conf in runs:
            model, seconds = timed_training(run_config, work / "train", name, nlu_only=True)
            result = asyncio.run(evaluate_model(model, held_out, public, min_conf))
            result["train_seconds"] = round(seconds, 1)
            report[name] = result
        if full:
            # The model `make run` serves: all the data, NLU and dialogue. Its training time is
            # the one of the target (5 minutes); the public set was never trained on.
            model, seconds = timed_training(work / "guichet.yml", PROJECT_ROOT / "data", "full", nlu_only=False)
            result = asyncio.run(evaluate_model(model, [], public, settings.faq_min_confidence))
            report["guichet_full"] = {
                "train_seconds": round(seconds, 1), "public": result["public"],
                "min_topic_confidence": settings.faq_min_confidence,
                "threshold_sweep": {t: {k: v for k, v in row.items() if k.startswith("public")}
                                    for t, row in result["threshold_sweep"].items()},
            }
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    (output / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def main() -> None:
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "config.yml", help="configuration to evaluate")
    parser.add_argument("--skip-baseline", action="store_true", help="do not train Rasa's default recipe")
    parser.add_argument("--skip-full", action="store_true", help="do not train the full model (all data)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="report folder")
    args = parser.parse_args()
    report = run(args.out, args.config.resolve(), baseline=not args.skip_baseline, full=not args.skip_full)
    print(markdown(report).split("## FAQ confidence")[0])
    print(f"Written to {args.out}/report.md and report.json")


if __name__ == "__main__":
    main()
