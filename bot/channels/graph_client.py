"""An async client for Meta's Graph API (Messenger, Instagram, WhatsApp Cloud).

One `aiohttp.ClientSession` per client (created on first use, closed by `close()`),
a timeout on every call, and retries with exponential backoff and jitter for what Meta
documents as transient: HTTP 5xx and 429, timeouts and connection errors, and the error
codes below. Every Graph error is logged with its code, subcode and `fbtrace_id`; what
cannot be sent raises a typed `GraphApiError`.

Error codes (Messenger Send API error codes and Graph API error handling, copied from
Meta's documentation; see docs/channels.md):

| code              | meaning                                    | here           |
|-------------------|--------------------------------------------|----------------|
| 1200              | temporary send message failure             | retry          |
| 2                 | unexpected error, retry later              | retry          |
| 4, 17             | application / user call limit              | retry (backoff)|
| 613               | calls exceeded the rate limit              | retry (backoff)|
| 80006             | Messenger business-use-case rate limit     | retry (backoff)|
| 1                 | unknown error (1/99: missing permission)   | retry once     |
| 10 (/2018278)     | sent outside the allowed window            | no retry       |
| 190               | invalid or expired access token            | no retry       |
| 200-299, 230      | permissions                                | no retry       |
| 551               | this person isn't available right now      | no retry       |
| 100               | invalid parameter                          | no retry       |
| 368               | deemed abusive or disallowed               | no retry       |

A retried call may, rarely, have been carried out by Meta before its answer was lost (a
timeout): the Send API has no idempotency key, so a retry after a timeout trades a rare
duplicate for a lost message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
from typing import Any

import aiohttp

from bot import metrics

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
# Latest Graph API version as of late 2026 (v25.0 is available until 2028-07-29).
DEFAULT_VERSION = "v26.0"

RETRYABLE_CODES = frozenset({1200, 2, 4, 17, 613, 80006})
NON_RETRYABLE_CODES = frozenset({10, 190, 230, 551, 100, 368, *range(200, 300)})
RETRY_ONCE_CODES = frozenset({1})


class GraphApiError(Exception):
    """A Graph API call that failed for good (or a transport failure: `code` None)."""

    def __init__(
        self,
        code: int | None,
        subcode: int | None,
        message: str,
        fbtrace_id: str | None = None,
        retryable: bool = False,
        status: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code
        self.subcode = subcode
        self.message = message
        self.fbtrace_id = fbtrace_id
        self.retryable = retryable
        self.status = status
        self.error_type = error_type

    @property
    def is_window_closed(self) -> bool:
        return self.code == 10 and self.subcode in (None, 2018278)

    @property
    def is_invalid_token(self) -> bool:
        return self.code == 190

    def __str__(self) -> str:
        return (
            f"Graph API error code={self.code} subcode={self.subcode} status={self.status} "
            f"fbtrace_id={self.fbtrace_id}: {self.message}"
        )

    @classmethod
    def from_response(cls, status: int, body: Any) -> GraphApiError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(None, None, f"HTTP {status} without a Graph error body", None,
                       retryable=is_retryable_status(status), status=status)
        code = _int(error.get("code"))
        subcode = _int(error.get("error_subcode"))
        return cls(
            code,
            subcode,
            str(error.get("message") or "")[:1000],
            str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
            retryable=is_retryable(status, code, subcode),
            status=status,
            error_type=str(error.get("type") or "") or None,
        )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


def is_retryable(status: int, code: int | None, subcode: int | None) -> bool:
    """Meta's advice per error code; the HTTP status decides for unknown codes."""
    if code in NON_RETRYABLE_CODES:
        return False
    if code in RETRYABLE_CODES:
        return True
    if code in RETRY_ONCE_CODES:
        return subcode != 99
    return is_retryable_status(status)


def appsecret_proof(access_token: str, app_secret: str) -> str:
    """`appsecret_proof`: HMAC-SHA256 of the access token keyed by the app secret."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class GraphClient:
    """Calls `<base_url>/<version>/<path>` with an access token; see the module docstring.

    `token_in="query"` passes `access_token` as a query parameter (Messenger's documented
    form); `"header"` sends `Authorization: Bearer` (WhatsApp's).
    """

    def __init__(
        self,
        access_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        token_in: str = "query",
        app_secret: str = "",
        name: str = "graph",
    ) -> None:
        if token_in not in ("query", "header"):
            raise ValueError("token_in must be 'query' or 'header'")
        self.access_token = access_token
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.token_in = token_in
        self.app_secret = app_secret
        self.name = name
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or getattr(self._session, "_loop", loop) is not loop:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "guichet-graph-client"},
                json_serialize=lambda obj: json.dumps(obj, ensure_ascii=False),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1` (exponential, jittered)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _auth(self, params: dict[str, str], headers: dict[str, str]) -> None:
        if not self.access_token:
            return
        if self.token_in == "query":
            params["access_token"] = self.access_token
        else:
            headers["Authorization"] = f"Bearer {self.access_token}"
        if self.app_secret:
            params["appsecret_proof"] = appsecret_proof(self.access_token, self.app_secret)

    async def _attempt(
        self, method: str, path: str, json_body: Any, params: dict[str, str] | None, timeout: float
    ) -> Any:
        query = {k: str(v) for k, v in (params or {}).items()}
        headers: dict[str, str] = {}
        self._auth(query, headers)
        session = self._get_session()
        try:
            async with session.request(
                method, self.url(path), params=query, json=json_body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except asyncio.TimeoutError:
            raise GraphApiError(None, None, f"no answer within {timeout:g} s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise GraphApiError(None, None, f"connection failed: {exc!r}"[:500], retryable=True) from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if 200 <= status < 300 and body is not None and not (isinstance(body, dict) and "error" in body):
            return body
        error = GraphApiError.from_response(status, body)
        if retry_after and retry_after.isdigit():
            error.retry_after = float(retry_after)
        raise error

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        context: str = "",
    ) -> Any:
        """The parsed JSON answer; raises `GraphApiError` once retries are exhausted."""
        attempts = max(1, max_attempts or self.max_attempts)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(method, path, json_body, params, timeout or self.timeout)
            except GraphApiError as error:
                once_only = error.code in RETRY_ONCE_CODES
                last = attempt >= attempts or not error.retryable or (once_only and attempt >= 2)
                log = logger.error if last else logger.warning
                log(
                    "%s: %s %s failed (attempt %d/%d%s): code=%s subcode=%s status=%s "
                    "fbtrace_id=%s retryable=%s: %s",
                    self.name, method, path, attempt, attempts, f", {context}" if context else "",
                    error.code, error.subcode, error.status, error.fbtrace_id, error.retryable,
                    error.message,
                )
                if last:
                    metrics.GRAPH_ERRORS.labels(self.name, str(error.code) if error.code is not None else "transport").inc()
                    raise
                await asyncio.sleep(self.backoff(attempt, error.retry_after))

    async def post(self, path: str, json_body: Any, **kwargs: Any) -> Any:
        return await self.request("POST", path, json_body=json_body, **kwargs)

    async def get(self, path: str, params: dict[str, str] | None = None, **kwargs: Any) -> Any:
        return await self.request("GET", path, params=params, **kwargs)

    async def delete(self, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, json_body=json_body, **kwargs)
