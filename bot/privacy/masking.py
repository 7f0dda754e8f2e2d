"""Phone numbers and e-mail addresses never reach the logs in clear.

`PersonalDataFilter` rewrites a log record's message (and its formatted traceback) with
phone numbers and e-mails masked. `install()` puts it on every record of the process: it
wraps the log record factory, so the masking holds whatever handlers Rasa, Sanic, aiohttp
or the tests configure later, and adds the filter to the handlers already there. It is
installed when the `bot` package is imported, i.e. in every Guichet process (Rasa server
through its channels, action server, console, command-line tools).

Masked forms keep the last two digits of a number, for support: `[tél. …78]`, and nothing
of an e-mail: `[e-mail]`. WhatsApp ids are phone numbers too (`33612345678`).
"""

from __future__ import annotations

import logging
import re
import threading

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}")
_SEP = r"[\s.\-]?"
PHONE = re.compile(
    r"(?<![\w+])(?:"
    rf"(?:\+|00)\d{{1,3}}{_SEP}(?:\(0\){_SEP})?\d(?:{_SEP}\d){{6,12}}"  # +33 6 12 34 56 78, 0033…, +1 …
    rf"|0[1-9](?:{_SEP}\d{{2}}){{4}}"  # 06 12 34 56 78, 06.12.34.56.78, 0612345678
    r"|33[1-9]\d{8}"  # a French WhatsApp id: 33612345678
    r")(?![\w])"
)
EMAIL_MASK = "[e-mail]"


def _phone_mask(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return f"[tél. …{digits[-2:]}]"


def mask(text: str) -> str:
    """`text` with its e-mail addresses and phone numbers masked."""
    if not text or ("@" not in text and not any(c.isdigit() for c in text)):
        return text
    return PHONE.sub(_phone_mask, EMAIL.sub(EMAIL_MASK, text))


class PersonalDataFilter(logging.Filter):
    """Masks the message of each record (formats it once, then drops its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_guichet_masked", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's problem, not ours
            return True
        masked = mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        record._guichet_masked = True
        return True


_installed = False
_lock = threading.Lock()
FILTER = PersonalDataFilter()


def install() -> None:
    """Masks every log record of this process from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            FILTER.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        root = logging.getLogger()
        root.addFilter(FILTER)
        for handler in root.handlers:
            handler.addFilter(FILTER)
        _installed = True
