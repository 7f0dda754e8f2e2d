"""Two changes to how Rasa 3.6 runs a turn, measured by bench/messenger_webhook.py.

1. The action server's answer is checked against Rasa's JSON schema with a validator built
once. Rasa calls `jsonschema.validate()` for every custom action, which first re-checks
the schema itself against the JSON Schema meta-schema (36 ms per action on the 2-core
machine, 1.5 ms with the prepared validator): profiled under load (py-spy), that was three
quarters of the Rasa server's event-loop time. The check of each answer is the same.

2. The NLU parse runs off the event loop. Rasa 3.6 runs the NLU pipeline (featurisers,
DIET, the FAQ topic selector) synchronously inside its asyncio event loop: while one message is
parsed (~15 ms on 2 cores), the server can neither acknowledge a webhook, nor answer a
health check, nor push an agent's reply.

`OffLoopMessageProcessor` parses in a worker thread instead (TensorFlow and NumPy
release the GIL while they compute), so the loop stays free for I/O. Everything else is
Rasa's: the lock store still serialises each conversation, so order is unchanged.
`install()` makes Rasa's `Agent` build this processor for every model it loads (at start
and on `PUT /model`) and Rasa's `RemoteAction` use the prepared validator;
`bot.rasa_server` calls it before starting Rasa's CLI.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
import rasa.core.agent
import structlog
from rasa.core.actions.action import RemoteAction
from rasa.core.channels.channel import UserMessage
from rasa.core.processor import MessageProcessor
from rasa.shared.core.trackers import DialogueStateTracker

structlogger = structlog.get_logger()

THREADS_VARIABLE = "GUICHET_NLU_THREADS"
DEFAULT_THREADS = 1

_executor: ThreadPoolExecutor | None = None


def nlu_threads() -> int:
    """Threads parsing messages (`GUICHET_NLU_THREADS`, 1 by default).

    One thread frees the event loop; a second did not answer 50 citizens faster on
    2 cores (bench/messenger_webhook.py, 2026-12-03: reply p95 1.6-2.5 s with 1 thread,
    1.8-2.7 s with 2)."""
    try:
        return max(1, int(os.environ.get(THREADS_VARIABLE, DEFAULT_THREADS)))
    except ValueError:
        return DEFAULT_THREADS


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=nlu_threads(), thread_name_prefix="guichet-nlu")
    return _executor


class OffLoopMessageProcessor(MessageProcessor):
    """`MessageProcessor` whose NLU parse runs in a worker thread."""

    async def parse_message(
        self,
        message: UserMessage,
        tracker: DialogueStateTracker | None = None,
        only_output_properties: bool = True,
    ) -> dict[str, Any]:
        if self.http_interpreter:
            return await super().parse_message(message, tracker, only_output_properties)
        if tracker is None:
            tracker = DialogueStateTracker.from_events(message.sender_id, [])
        loop = asyncio.get_running_loop()
        parse_data = await loop.run_in_executor(
            executor(), self._parse_message_with_graph, message, tracker, only_output_properties
        )
        # The rest of Rasa's `parse_message`, unchanged.
        self._update_full_retrieval_intent(parse_data)
        structlogger.debug(
            "processor.message.parse",
            parse_data_text=copy.deepcopy(parse_data["text"]),
            parse_data_intent=parse_data["intent"],
            parse_data_entities=copy.deepcopy(parse_data["entities"]),
        )
        self._check_for_unseen_features(parse_data)
        return parse_data


@functools.lru_cache(maxsize=1)
def action_result_validator() -> jsonschema.protocols.Validator:
    """Rasa's schema for an action server's answer, checked once, as a reusable validator."""
    schema = RemoteAction.action_response_format_spec()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate_action_result(_action: RemoteAction, result: dict[str, Any]) -> bool:
    """`RemoteAction._validate_action_result` with the prepared validator (same errors)."""
    error = jsonschema.exceptions.best_match(action_result_validator().iter_errors(result))
    if error is None:
        return True
    error.message += (
        ". Failed to validate Action server response from API, make sure your response "
        "from the Action endpoint is valid."
    )
    raise error


def install() -> None:
    """Use both changes in this process, for every model Rasa loads."""
    rasa.core.agent.MessageProcessor = OffLoopMessageProcessor  # type: ignore[misc]
    RemoteAction._validate_action_result = validate_action_result  # type: ignore[method-assign]
