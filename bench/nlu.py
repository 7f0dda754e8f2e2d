"""NLU ceiling: parses per second of the trained model in one process, and latency.

    python -m bench.nlu   ->  bench/results/nlu.json
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

from bot.faq.evaluation import load_public_set

RESULTS = Path(__file__).parent / "results"


async def measure(agent, texts: list[str], rounds: int) -> dict:
    for text in texts[:5]:  # warm-up
        await agent.parse_message(text)
    latencies = []
    started = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            t0 = time.perf_counter()
            await agent.parse_message(text)
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "parses": len(latencies),
        "parses_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1),
    }


def ceiling(model: Path, rounds: int = 5) -> dict:
    """Parses of the public set's questions by `model`, loaded in this process."""
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))
    texts = [case.text for case in load_public_set()]
    return {"model": model.name, **asyncio.run(measure(agent, texts, rounds))}


def main(rounds: int = 5) -> dict:
    from bot.faq.training import ensure_model

    result = ceiling(ensure_model(), rounds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "nlu.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
