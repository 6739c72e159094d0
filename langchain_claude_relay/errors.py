"""The package's exceptions: one root, a flat tree, every relay failure typed.

::

    ClaudeRelayError
    ├── RequestValidationError (also ValueError)  bad user input, raised before any network call
    ├── LedgerUnavailableError                    a persistent ledger cannot store entries
    ├── APIConnectionError                        the relay could not be reached
    │   └── APITimeoutError
    ├── APIResponseError                          the relay answered something that is not a valid
    │                                             response (HTML page, empty body, no choices,
    │                                             garbage usage, broken or cut SSE stream)
    └── APIStatusError                            the relay answered an HTTP error status
        ├── BadRequestError          400 (Anthropic's cache errors explained in plain words)
        ├── AuthenticationError      401
        ├── PermissionDeniedError    403
        ├── NotFoundError            404
        ├── ConflictError            409
        ├── RequestTooLargeError     413
        ├── UnprocessableEntityError 422
        ├── RateLimitError           429
        ├── InternalServerError      5xx
        └── OverloadedError          529

Where langchain-core (1.8+) has a provider-neutral class for the same condition, ours also
subclass it, so code written against ``langchain_core.exceptions`` catches them too:
``APIConnectionError`` is a ``ModelConnectionError``, ``APITimeoutError`` a ``ModelTimeoutError``,
400/413/422 a ``ModelInvalidRequestError``, 401 ``ModelAuthenticationError``, 403
``ModelPermissionDeniedError``, 404 ``ModelNotFoundError``, 429 ``ModelRateLimitError``, 5xx
``ModelAPIError`` (with an older langchain-core these bases are plain ``Exception``).

Warnings (``UserWarning`` subclasses, each issued once where it would repeat)::

    InsecureTransportWarning      an http_client that does not verify the relay's TLS certificate
    StateWarning                  saved state failed; kept in memory instead
    ├── StateStoreWarning         the planner's state store (planning goes on in memory)
    ├── LedgerWarning             the cost ledger (entries kept in memory)
    └── RedisStateWarning         the fleet's Redis is unreachable (local state until it returns)

Every error carries a short excerpt of the body (at most ``BODY_EXCERPT_CHARS`` characters),
never the API key: messages are scrubbed of anything that looks like a key before they are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

try:  # langchain-core 1.8+: provider-neutral model errors
    from langchain_core.exceptions import (
        ModelAPIError,
        ModelAuthenticationError,
        ModelConnectionError,
        ModelError,
        ModelInvalidRequestError,
        ModelNotFoundError,
        ModelPermissionDeniedError,
        ModelRateLimitError,
        ModelTimeoutError,
    )
except ImportError:  # pragma: no cover - older langchain-core: no extra bases
    ModelError = ModelAPIError = ModelAuthenticationError = ModelConnectionError = Exception  # type: ignore[assignment,misc]
    ModelInvalidRequestError = ModelNotFoundError = ModelPermissionDeniedError = Exception  # type: ignore[assignment,misc]
    ModelRateLimitError = ModelTimeoutError = Exception  # type: ignore[assignment,misc]

__all__ = [
    "BODY_EXCERPT_CHARS",
    "ClaudeRelayError",
    "RequestValidationError",
    "LedgerUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseError",
    "CutResponseError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "OverloadedError",
    "InsecureTransportWarning",
    "StateWarning",
    "StateStoreWarning",
    "LedgerWarning",
    "RedisStateWarning",
    "status_error_class",
    "status_hint",
    "make_status_error",
    "WayIn",
    "ERROR_TYPE_STATUS",
    "excerpt",
    "redact",
]

BODY_EXCERPT_CHARS = 300

_KEY_PATTERN = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._\-]{6,}|(?i:x-api-key)\s*[:=]\s*\S+)"
)


MIN_SECRET_CHARS = 4
"""Secrets shorter than this are not written over: no real credential is, and a test key such
as ``"k"`` would turn every message into asterisks."""


def redact(text: str, *secrets: str | None) -> str:
    """Replace anything that looks like an API key, and the given secrets, by ``***``.

    >>> redact("bad key sk-abcdef123456 given")
    'bad key *** given'
    >>> redact("Unknown key", "k")
    'Unknown key'
    """
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_CHARS:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def excerpt(body: Any, limit: int = BODY_EXCERPT_CHARS) -> str:
    """A short, single-line, redacted excerpt of a response body for error messages."""
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = " ".join(str(body).split())
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ClaudeRelayError(Exception):
    """Root of every error this package raises on purpose."""


class RequestValidationError(ClaudeRelayError, ValueError):
    """The user's request is invalid; raised before anything is sent. The message says the fix."""


class LedgerUnavailableError(ClaudeRelayError):
    """The ledger cannot store entries (its directory or database failed, or it was closed)."""


class APIConnectionError(ClaudeRelayError, ModelConnectionError):
    """The relay could not be reached (refused, reset, DNS, TLS)."""

    def __init__(self, message: str = "Connection error.") -> None:
        super().__init__(redact(message))


class APITimeoutError(APIConnectionError, ModelTimeoutError):
    """The relay did not answer within the timeout."""

    def __init__(self, message: str = "Request timed out.") -> None:
        super().__init__(message)


def _rebuilt(cls: type[BaseException], message: str, state: dict[str, Any]) -> BaseException:
    """An error as it was pickled: its message as formatted, its attributes as they were."""
    error = cls.__new__(cls)
    BaseException.__init__(error, message)
    error.__dict__.update(state)
    return error


class _PicklesWhole:
    """Errors with keyword-only attributes survive pickling, so a worker's error reaches its parent.

    The default ``__reduce__`` calls ``__init__`` with the formatted message alone, which
    raised ``TypeError`` in a ``multiprocessing`` pool's result thread, hanging the pool.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        message = self.args[0] if self.args else ""  # type: ignore[attr-defined]
        return (_rebuilt, (type(self), message, dict(self.__dict__)))


class APIResponseError(_PicklesWhole, ClaudeRelayError):
    """The relay answered, but not with a valid response (malformed body, broken stream).

    Attributes:
        status_code: the HTTP status of the answer (200 for a malformed success body).
        body_excerpt: at most ``BODY_EXCERPT_CHARS`` characters of the body, redacted.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None) -> None:
        self.status_code = status_code
        self.body_excerpt = excerpt(body)
        detail = f" (status {status_code})" if status_code is not None else ""
        tail = f": {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(redact(f"{message}{detail}{tail}"))


class CutResponseError(APIResponseError):
    """A 2xx JSON answer that ended part-way: the relay or the network cut it.

    Claude bills such a request (it began), but its usage went with the rest of the body, so
    the chat model records an estimate in the ledger (``LedgerEntry.estimated``) for each cut
    attempt, retried or not.

    Attributes:
        response_id: the answer's ``id`` when the part received holds it, else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        response_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.response_id = response_id


class APIStatusError(_PicklesWhole, ClaudeRelayError, ModelError):
    """The relay answered with an HTTP error status.

    Attributes:
        status_code: the HTTP status.
        body_excerpt: at most ``BODY_EXCERPT_CHARS`` characters of the body, redacted.
        request_id: the relay's request id header, if any.
        retry_after: seconds the relay asked us to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.body_excerpt = excerpt(body)
        self.request_id = request_id
        self.retry_after = retry_after
        tail = f": {self.body_excerpt}" if self.body_excerpt else ""
        super().__init__(redact(f"{message} (status {status_code}){tail}"))


class BadRequestError(APIStatusError, ModelInvalidRequestError):
    """400: the relay or Claude rejected the request."""


class AuthenticationError(APIStatusError, ModelAuthenticationError):
    """401: the key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError, ModelPermissionDeniedError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(APIStatusError, ModelNotFoundError):
    """404: wrong ``base_url`` path or a model id the relay does not know."""


class ConflictError(APIStatusError):
    """409: a conflicting concurrent request (retried)."""


class RequestTooLargeError(APIStatusError, ModelInvalidRequestError):
    """413: the request body is larger than the relay accepts."""


class UnprocessableEntityError(APIStatusError, ModelInvalidRequestError):
    """422: the relay could not process the request body."""


class RateLimitError(APIStatusError, ModelRateLimitError):
    """429: a rate limit was hit (retried after ``retry-after``)."""


class InternalServerError(APIStatusError, ModelAPIError):
    """5xx: the relay or upstream failed (retried)."""


class OverloadedError(InternalServerError):
    """529: Claude is overloaded (retried)."""


class InsecureTransportWarning(UserWarning):
    """The HTTP client given does not verify the relay's TLS certificate or host name."""


class StateWarning(UserWarning):
    """Saved state (planner statistics, the cost ledger) failed; it is kept in memory instead."""


class StateStoreWarning(StateWarning):
    """The state store failed; planning goes on in memory (statistics are not persisted)."""


class LedgerWarning(StateWarning, RuntimeWarning):
    """The cost ledger failed; calls are recorded in memory for the rest of the process."""


class RedisStateWarning(StateWarning):
    """Redis could not be reached; the fleet state continues locally until it comes back."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    529: OverloadedError,
}

_STATUS_HINTS: dict[int, str] = {
    403: "the key may not use this model or endpoint",
    404: "check base_url (it usually ends in /v1) and the model id the relay expects",
    413: "the request is too large for the relay; shorten the prompt or the images",
    429: "rate limited (after max_retries retries; none with max_retries=0)",
    529: "Claude is overloaded (after max_retries retries; none with max_retries=0)",
}
"""The hints of an OpenAI-compatible relay (``api="openai"``), and of every way in where
``_WAY_IN_HINTS`` has none. A 401's hint is ``_auth_hint``'s: the variables the way in reads."""

_WAY_IN_HINTS: dict[str, dict[int, str]] = {
    "anthropic": {
        404: "check base_url: for api='anthropic' it is the host without /v1, e.g. "
        "'https://api.anthropic.com' (the SDK adds /v1/messages itself), and the model id",
    },
    "bedrock": {
        403: "the AWS credentials may not invoke this model: check that they are valid, that "
        "their IAM policy allows bedrock:InvokeModel and that model access is granted in "
        "aws_region",
        404: "check the model id: Bedrock's own (e.g. 'anthropic.claude-...' or an inference "
        "profile such as 'us.anthropic.claude-...'), offered in aws_region; leave base_url "
        "unset for the regional endpoint",
    },
    "vertex": {
        403: "the Google credentials may not use this model: enable it in Vertex AI's Model "
        "Garden for vertex_project and check the IAM role (Vertex AI User)",
        404: "check the model id (Vertex's, e.g. 'claude-sonnet-4-5@20250929'), vertex_project "
        "and vertex_region (the model must be offered there); leave base_url unset for the "
        "regional endpoint",
    },
}
"""Hints that depend on the way in (``api=``): a native API's base URL has no ``/v1``, and
Bedrock and Vertex authenticate with cloud credentials."""

_KEY_LABELS = {
    "openai": "the relay's key",
    "anthropic": "your Anthropic key",
    "bedrock": "a Bedrock API key",
}

_CLOUD_CREDENTIALS = {
    "bedrock": "AWS credentials: aws_access_key_id= and aws_secret_access_key=, aws_profile=, "
    "or the AWS credential chain",
    "vertex": "Google credentials: vertex_access_token=, vertex_credentials=, or Application "
    "Default Credentials (gcloud auth application-default login)",
}


def _auth_hint(
    api: str, key_env: tuple[str, ...], key_from: str | None, has_key: bool | None
) -> str:
    """The 401 hint: which key or credentials to check, and where the key was read from.

    ``key_from`` is the name of the environment variable the key was read from, if known
    (never the key); ``has_key=False`` says no key was sent (Bedrock signs with AWS
    credentials then, Vertex always uses Google credentials).
    """
    cloud = _CLOUD_CREDENTIALS.get(api)
    if cloud is not None and (api == "vertex" or has_key is False):
        return f"check the {cloud}"
    label = _KEY_LABELS.get(api, "the key")
    earlier = key_env[: key_env.index(key_from)] if key_from in key_env else ()
    if key_from is None:
        names = "".join(f", else {name}" for name in key_env)
        hint = f"check the API key ({label}: api_key={names})"
    elif earlier:
        first = " or ".join(earlier)
        hint = (
            f"check the API key ({label}), read from {key_from}, the fallback when {first} is "
            f"not set: set {first} to {label}, or pass api_key="
        )
    else:
        hint = f"check the API key ({label}), read from {key_from}: fix it there, or pass api_key="
    if cloud is not None:
        hint += f"; without a key, requests are signed with {cloud}"
    return hint


@dataclass(frozen=True)
class WayIn:
    """The way in an error came through, for its hint (the transport knows it; no secret).

    Attributes:
        api: ``"openai"`` (a relay), ``"anthropic"``, ``"bedrock"`` or ``"vertex"``.
        key_env: the environment variables the way in reads its key from, in order (the
            transport passes its ``ApiSpec.key_env``; this module cannot import it).
        key_from: the variable the key was actually read from, if known (never the key).
        has_key: whether a key was sent (``None``: unknown).
    """

    api: str = "openai"
    key_env: tuple[str, ...] = ()
    key_from: str | None = None
    has_key: bool | None = None


def status_hint(status_code: int, way_in: WayIn | None = None) -> str | None:
    """The plain-words hint for an error status on a way in (``None``: no hint).

    Args:
        status_code: the HTTP status.
        way_in: where the error came through (``None``: a relay, nothing more known).

    >>> status_hint(404, WayIn("anthropic")).startswith("check base_url: for api='anthropic'")
    True
    >>> status_hint(401, WayIn("anthropic", ("ANTHROPIC_API_KEY",)))
    'check the API key (your Anthropic key: api_key=, else ANTHROPIC_API_KEY)'
    >>> relay = WayIn(key_env=("CLAUDE_RELAY_API_KEY", "OPENAI_API_KEY"), key_from="OPENAI_API_KEY")
    >>> status_hint(401, relay)  # doctest: +ELLIPSIS
    "check the API key (the relay's key), read from OPENAI_API_KEY, the fallback when ..."
    """
    way = way_in or WayIn()
    if status_code == 401:
        return _auth_hint(way.api, way.key_env, way.key_from, way.has_key)
    return _WAY_IN_HINTS.get(way.api, {}).get(status_code) or _STATUS_HINTS.get(status_code)


# Anthropic's 400 messages about caching, and what they mean in plain words.
_CACHE_ERROR_EXPLANATIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"cache_control.*(more than|maximum of|at most)\s*4|4 blocks? with cache_control", re.I
        ),
        "more than 4 cache_control markers in one request: Claude allows at most 4 (the relay "
        "may have added its own); remove markers or let the planner place them (cache='auto')",
    ),
    (
        re.compile(r"ttl.*(order|must not come after|longer|1h.*5m)", re.I),
        "a 1h cache marker comes after a 5m one: every 1h marker must come before every 5m "
        "marker in prefix order (tools, system, messages)",
    ),
    (
        re.compile(r"max_tokens:? ?0 is only allowed", re.I),
        "max_tokens=0 only pre-warms the cache: it needs a cache_control breakpoint and no "
        "thinking, structured output or forced tool choice; send max_tokens=1 (llm.warm(...) "
        "chooses for you)",
    ),
    (
        re.compile(r"thinking may not be enabled when tool_choice forces", re.I),
        "extended thinking takes only tool_choice 'auto' or 'none': drop the forced tool "
        "choice, or turn thinking off for this call",
    ),
    (
        re.compile(r"max_tokens must be greater than thinking\.budget_tokens", re.I),
        "max_tokens must be above the thinking budget_tokens: raise max_tokens or lower the budget",
    ),
    (
        re.compile(r"cache_control.*(thinking|empty)", re.I),
        "a cache marker sits on a thinking block or an empty text block, which cannot carry one",
    ),
)


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The error class for an HTTP status (any 5xx other than 529 is ``InternalServerError``)."""
    if status_code in _STATUS_CLASSES:
        return _STATUS_CLASSES[status_code]
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


def explain_status(status_code: int, body_text: str, way_in: WayIn | None = None) -> str:
    """A plain-words explanation for a status, with Anthropic's cache errors spelled out.

    ``way_in`` chooses the hint for the way the error came through (see ``status_hint``).
    """
    if status_code == 400:
        for pattern, explanation in _CACHE_ERROR_EXPLANATIONS:
            if pattern.search(body_text):
                return f"Bad request: {explanation}"
        return "Bad request: the relay rejected the request"
    if 300 <= status_code < 400:
        return (
            "Redirect: the relay answered a redirect, which is not followed for API calls (the "
            "key's headers would go along to wherever it points): set base_url to the address "
            "it points to, if you trust it"
        )
    hint = status_hint(status_code, way_in)
    name = status_error_class(status_code).__name__
    return f"{name}: {hint}" if hint else f"{name}: the relay answered an error"


ERROR_TYPE_STATUS: dict[str, int] = {
    # Anthropic's error types (error bodies and native stream ``error`` events)
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
    # Bedrock's stream exception frames
    "ThrottlingException": 429,
    "ServiceUnavailableException": 503,
    "ModelStreamErrorException": 500,
    "InternalServerException": 500,
    "ValidationException": 400,
}
"""The HTTP status each API error type stands for (a streamed error has no status of its own)."""


def make_status_error(
    status_code: int,
    body: Any,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    way_in: WayIn | None = None,
) -> APIStatusError:
    """Build the typed error for an HTTP error answer.

    Args:
        status_code: the HTTP status.
        body: the body (text, bytes or parsed JSON).
        request_id: the relay's request id header, if any.
        retry_after: seconds the relay asked to wait, if any.
        way_in: the way the error came through, for its hint (``None``: a relay's hints).

    Returns:
        An instance of the class ``status_error_class(status_code)``.
    """
    text = excerpt(body, limit=2000)
    cls = status_error_class(status_code)
    return cls(
        explain_status(status_code, text, way_in),
        status_code=status_code,
        body=body,
        request_id=request_id,
        retry_after=retry_after,
    )
