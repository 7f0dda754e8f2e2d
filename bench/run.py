"""`make bench`: runs every benchmark of bench/ one after the other.

Each writes its results to bench/results/<name>.json; the README quotes them.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bench.nlu", "bench.messenger_webhook", "bench.handoff", "bench.cluster"]


def main() -> None:
    selected = sys.argv[1:] or BENCHMARKS
    for name in selected:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"{name}: not available, skipped")
            continue
        print(f"== {name}")
        module.main()


if __name__ == "__main__":
    main()
