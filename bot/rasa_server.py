"""Rasa's command line with Guichet's runtime changes: `python -m bot.rasa_server run ...`.

Same arguments as `rasa`; before Rasa starts, the message processor that parses off the
event loop is installed (`bot.processor`). Use it wherever `rasa run` would be used.
"""

from __future__ import annotations

from bot import processor


def main() -> None:
    processor.install()
    from rasa.__main__ import main as rasa_main

    rasa_main()


if __name__ == "__main__":
    main()
